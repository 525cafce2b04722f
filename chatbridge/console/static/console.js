/* Chatbridge operator console: a single-page app in vanilla JS (no build step).
 *
 * Pages (hash routes): #/inbox[/<thread id>], #/agents, #/routes, #/dead-letters,
 * #/broadcasts (console-broadcasts.js), #/settings.
 * Everything comes from the bridge's own APIs with the session cookie; changes carry the
 * CSRF token the server put in <meta name="csrf-token">. Data is only ever written into the
 * page as text (textContent / text nodes), never as HTML.
 */
(() => {
  "use strict";

  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const POLL_MS = 2000;
  const CHANNELS = ["chatwoot", "webchat", "whatsapp"];
  const view = document.getElementById("view");
  const policiesUi = window.chatbridgeRoutePolicies(h); // route-policies.js
  const templatesKit = window.chatbridgeTemplates({ h, api, act, toast }); // console-templates.js
  const mediaKit = window.chatbridgeMedia({ h, api }); // console-media.js
  const broadcastsKit = window.chatbridgeBroadcasts({ h, api, act, toast, replace }); // console-broadcasts.js
  const liveKit = window.chatbridgeLive({ h, api }); // console-live.js
  const operatorsKit = window.chatbridgeOperators({ h, api, act, toast, replace, q: (p) => q(p) }); // console-operators.js

  // ------------------------------------------------------------------ DOM helpers

  /** h("div", {class: "x", onclick: f, "aria-label": "y"}, "text", child, [more]) */
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key === "value") el.value = value;
      else if (key === "checked") el.checked = !!value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    append(el, kids);
    return el;
  }

  function append(el, ...kids) {
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  function replace(el, ...kids) {
    el.replaceChildren();
    return append(el, kids);
  }

  function pick(obj, ...names) {
    if (!obj) return undefined;
    for (const name of names) {
      const v = name.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
      if (v !== undefined && v !== null && v !== "") return v;
    }
    return undefined;
  }

  function toDate(t) {
    if (t === undefined || t === null || t === "") return null;
    const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
    return isNaN(d) ? null : d;
  }

  function fmtTime(t, full) {
    const d = toDate(t);
    if (!d) return "";
    const now = new Date();
    if (!full && d.toDateString() === now.toDateString())
      return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return d.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  function ago(t) {
    const d = toDate(t);
    if (!d) return "never";
    const s = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.round(s / 60)}m ago`;
    if (s < 86400) return `${Math.round(s / 3600)}h ago`;
    return fmtTime(t, true);
  }

  // ------------------------------------------------------------------ words people read

  const CHANNEL_LABEL = { chatwoot: "Chatwoot", webchat: "Web chat", whatsapp: "WhatsApp" };
  const channelLabel = (c) => CHANNEL_LABEL[c] || c || "?";
  const STATUS_LABEL = { open: "Open", pending: "Pending", resolved: "Resolved", snoozed: "Snoozed" };
  const REPLY_MODE_LABEL = { async: "Async", sync: "Sync" };
  const ON_FAILURE_LABEL = { fallback: "Reply with the fallback", handoff: "Hand over to a person" };
  const DELIVERY_KIND_LABEL = { message: "Message", handoff: "Handover to a person", note: "Private note", typing_on: "Typing", typing_off: "Typing stopped" };
  const word = (table, v) => table[v] || v;

  /** "1 failure", "3 failures": `many` defaults to `one` + "s". */
  function plural(n, one, many) {
    return `${n} ${n === 1 ? one : many || `${one}s`}`;
  }

  function toast(message, bad) {
    const t = h("div", { class: bad ? "toast bad" : "toast", role: bad ? "alert" : null }, message);
    document.getElementById("toasts").append(t);
    setTimeout(() => t.remove(), bad ? 6000 : 3000);
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details; // a 422's [{loc, msg, type}]: which field, and why
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = CSRF;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 401) {
      location.assign("/console/login");
      throw new ApiError(401, "unauthorized", "the session has ended");
    }
    const text = await r.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = { raw: text };
    }
    if (!r.ok) {
      const err = (data && data.error) || {};
      const msg = typeof err === "string" ? err : err.message || (data && data.detail) || r.statusText;
      throw new ApiError(r.status, err.code || "error", `${msg} (${r.status})`, err.details);
    }
    return data;
  }

  /** Run an action from a button: disable it meanwhile, toast a failure. */
  async function act(button, fn, okMessage) {
    if (button) button.disabled = true;
    try {
      const out = await fn();
      if (okMessage) toast(okMessage);
      return out;
    } catch (e) {
      toast(e.message || String(e), true);
      return undefined;
    } finally {
      if (button) button.disabled = false;
    }
  }

  const q = (params) => {
    const s = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== false && v != null) s.set(k, v);
    const out = s.toString();
    return out ? `?${out}` : "";
  };

  // ------------------------------------------------------------------ router + polling

  let current = null; // {name, refresh(), leave()}
  let polling = null; // the page whose refresh is in flight (a new page does not wait for it)

  function route() {
    const parts = (location.hash || "#/inbox").slice(2).split("/");
    const name = PAGES[parts[0]] ? parts[0] : "inbox";
    const arg = parts.slice(1).map(decodeURIComponent).join("/") || null;
    for (const a of document.querySelectorAll(".nav a")) {
      if (a.dataset.page === name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    if (current && current.name === name && current.select) {
      current.select(arg);
      return;
    }
    if (current && current.leave) current.leave();
    replace(view);
    current = { name, ...PAGES[name](arg) };
    document.title = `${current.title} · Chatbridge console`;
    tick();
  }

  async function tick() {
    if (!current || !current.refresh || polling === current) return;
    const page = (polling = current);
    try {
      await page.refresh();
    } catch (e) {
      if (page === current && e.status !== 401) page.failed && page.failed(e);
    } finally {
      if (polling === page) polling = null;
    }
  }

  setInterval(() => {
    if (!document.hidden) tick();
  }, POLL_MS);

  // ------------------------------------------------------------------ conversations

  function threadName(t) {
    const known = pick(t, "person.name", "contact.name", "contact_name", "name", "contact.phone", "phone", "contact.identifier");
    if (known) return known;
    const key = String(pick(t, "channel_key", "id") || "");
    // a web chat visitor who gave no name: a short, stable tag of the session's uid (the
    // whole uid is in the contact rail's details)
    if (t.channel === "webchat") return `Web visitor #${key.slice(0, 4)}`;
    return `${channelLabel(t.channel)} ${key}`;
  }

  function threadPreview(t) {
    const last = t.last_message;
    if (last && typeof last === "object") return `${last.direction === "out" ? "↩ " : ""}${last.text || ""}`;
    return pick(t, "last_message_text", "preview", "last_message") || "";
  }

  function ownerOf(t) {
    return pick(t, "owner", "conversation.owner") || "bot";
  }

  function unreadOf(t) {
    const u = pick(t, "unread_count", "unread");
    return typeof u === "number" ? u : u ? 1 : 0;
  }

  function ownerPill(owner) {
    return owner === "human"
      ? h("span", { class: "pill human", title: "a person answers; the agent is silent" }, "Human")
      : h("span", { class: "pill", title: "the agent answers" }, "Bot");
  }

  function statusMark(status) {
    if (!status) return null;
    const marks = { queued: "…", pending: "…", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "!" };
    return h(
      "span",
      { class: `msg-status status-${status}`, title: status, "data-status": status },
      `${marks[status] || ""} ${status}`,
    );
  }

  /** customer, agent, human (an operator), system or note (internal, never sent). */
  function authorOf(m) {
    const a = String(pick(m, "role", "author") || "").toLowerCase();
    if (m.direction === "in" || a === "contact") return "customer";
    if (["human", "operator"].includes(a)) return "human";
    if (a === "system" || a === "note") return a;
    return "agent";
  }

  /** A private note the bridge leaves the human who takes a conversation over. */
  function isHandoffSummary(m) {
    return m.direction === "note" && !!m.meta && m.meta.kind === "handoff_summary";
  }

  function renderHandoffSummary(m) {
    return h(
      "section",
      { class: "msg handoff-summary", "data-id": m.id, "data-kind": "handoff_summary", "aria-label": "Handoff summary" },
      h("div", { class: "summary-head" }, h("strong", {}, "Handoff summary"), h("span", { class: "muted" }, " — only your team sees this")),
      h("div", { class: "summary-text" }, m.text ?? ""),
      h("div", { class: "meta" }, h("span", {}, "private note, never sent"), h("span", {}, fmtTime(m.created_at))),
    );
  }

  const AUTHOR_LABEL = { customer: "Customer", human: "Operator", agent: "Agent", system: "System", note: "Note" };

  function inboxPage(initial) {
    const filters = { q: "", channel: "", status: "", owner: "", unlinked: false, unread: false, view: "all" };
    let threads = [];
    let selected = null;
    let chat = null; // the open thread's pane state

    const search = h("input", {
      type: "search",
      id: "thread-search",
      placeholder: "Search  /",
      "aria-label": "Search conversations",
      oninput: debounce(() => {
        filters.q = search.value.trim();
        tick();
      }, 250),
      onkeydown: (e) => {
        if (e.key === "ArrowDown" || e.key === "Enter") {
          e.preventDefault();
          move(1, true);
        }
      },
    });
    const select = (name, label, options) =>
      h(
        "select",
        {
          "aria-label": label,
          name,
          onchange: (e) => {
            filters[name] = e.target.value;
            tick();
          },
        },
        options.map(([v, t]) => h("option", { value: v }, t)),
      );
    const check = (name, label) =>
      h(
        "label",
        {},
        h("input", {
          type: "checkbox",
          name,
          onchange: (e) => {
            filters[name] = e.target.checked;
            tick();
          },
        }),
        label,
      );
    const list = h("ul", { class: "thread-list", role: "listbox", "aria-label": "Conversations", id: "threads" });
    const foot = h("div", { class: "list-foot" }, "Loading…");
    const items = new Map();
    const chatPane = h("section", { class: "chat", "aria-label": "Conversation" }, h("div", { class: "empty" }, "Pick a conversation (j / k)."));
    const rail = h("aside", { class: "rail", "aria-label": "Contact", id: "contact-rail" });
    // which pane a phone shows (list, then the chat); "rail-open" adds the contact rail where
    // the screen has no room for it beside the chat (console.css)
    const inbox = h("div", { class: "inbox", "data-pane": "list" });
    const panes = {
      show: (pane) => {
        inbox.dataset.pane = pane;
        if (pane === "list") panes.rail(false);
      },
      rail: (open) => {
        inbox.classList.toggle("rail-open", open);
        for (const b of inbox.querySelectorAll("[aria-controls='contact-rail']")) b.setAttribute("aria-expanded", String(open));
      },
    };

    append(
      view,
      append(
        inbox,
        h(
          "section",
          { class: "threads", "aria-label": "Inbox" },
          h(
            "div",
            { class: "threads-tools" },
            search,
            h(
              "div",
              { class: "row filters" },
              select("channel", "Channel", [["", "Channel"], ...CHANNELS.map((c) => [c, channelLabel(c)])]),
              select("status", "Status", [["", "Status"], ...["open", "pending", "resolved"].map((v) => [v, STATUS_LABEL[v]])]),
              select("owner", "Owner", [["", "Owner"], ["bot", "Bot"], ["human", "Human"]]),
            ),
            h("div", { class: "row" }, check("unread", "Unread"), check("unlinked", "Unlinked")),
            operatorsKit.viewTabs(filters, tick), // Mine / Unassigned / All
          ),
          list,
          foot,
        ),
        chatPane,
        rail,
      ),
    );

    function renderThread(li, t) {
      const unread = unreadOf(t);
      const name = threadName(t);
      const preview = threadPreview(t);
      const when = pick(t, "last_message.created_at", "last_activity_at", "created_at");
      li.className = unread ? "thread unread" : "thread";
      // a truncated name or preview is whole in the tooltip (two "Customer Serv…" rows differ)
      li.title = [name, preview, `${channelLabel(t.channel)} · ${fmtTime(when, true)}`].filter(Boolean).join("\n");
      replace(
        li,
        h("span", { class: "who" }, name),
        h("span", { class: "when" }, fmtTime(when)),
        h("span", { class: "preview" }, preview || h("span", { class: "muted" }, "No messages yet")),
        unread ? h("span", { class: "pill ok unread-count", title: plural(unread, "unread message") }, String(unread)) : h("span"),
        h("span", { class: "tags" }, h("span", { class: `pill channel channel-${t.channel}` }, channelLabel(t.channel)), ownerPill(ownerOf(t)), operatorsKit.threadTag(t)),
      );
    }

    function renderList() {
      const seen = new Set();
      threads.forEach((t, i) => {
        const id = String(t.id);
        seen.add(id);
        let entry = items.get(id);
        if (!entry) {
          const li = h("li", {
            role: "option",
            id: `thread-${id}`,
            "data-id": id,
            onclick: () => open(id),
          });
          entry = { li, sig: "" };
          items.set(id, entry);
        }
        const sig = JSON.stringify(t);
        if (sig !== entry.sig) {
          renderThread(entry.li, t);
          entry.sig = sig;
        }
        entry.li.setAttribute("aria-selected", String(id === selected));
        if (list.children[i] !== entry.li) list.insertBefore(entry.li, list.children[i] || null);
      });
      for (const [id, entry] of items) {
        if (!seen.has(id)) {
          entry.li.remove();
          items.delete(id);
        }
      }
      replace(foot, threads.length ? `${threads.length} conversation${threads.length === 1 ? "" : "s"}` : "No conversations match.");
    }

    function open(id) {
      location.hash = `#/inbox/${encodeURIComponent(id)}`;
    }

    function move(step, focusList) {
      if (!threads.length) return;
      let i = threads.findIndex((t) => String(t.id) === selected);
      i = i < 0 ? 0 : Math.min(threads.length - 1, Math.max(0, i + step));
      open(String(threads[i].id));
      if (focusList) search.blur();
    }

    function selectThread(id) {
      if (id === selected) return;
      selected = id;
      for (const [tid, entry] of items) entry.li.setAttribute("aria-selected", String(tid === id));
      const li = id && items.get(id);
      if (li) li.li.scrollIntoView({ block: "nearest" });
      if (chat) chat.close();
      chat = id ? openChat(id, chatPane, rail, panes) : null;
      panes.show(id ? "chat" : "list");
      panes.rail(false);
      if (!id) {
        replace(chatPane, h("div", { class: "empty" }, "Pick a conversation (j / k)."));
        replace(rail);
      }
    }

    async function refresh() {
      const data = await api("GET", `/api/comms/threads${q({ ...filters, limit: 200 })}`);
      threads = (data && (data.threads || data.items)) || [];
      renderList();
      if (chat) await chat.refresh();
    }

    selectThread(initial);
    return {
      title: "Conversations",
      refresh,
      select: (id) => {
        selectThread(id);
        if (chat) chat.refresh().catch((e) => e.status !== 401 && toast(e.message, true));
      },
      leave: () => chat && chat.close(),
      failed: (e) => replace(foot, h("span", { class: "status-failed" }, e.message)),
      keys: {
        "/": () => search.focus(),
        j: () => move(1),
        k: () => move(-1),
        ArrowDown: () => move(1),
        ArrowUp: () => move(-1),
        r: () => chat && chat.focusComposer(),
        Escape: () => panes.rail(false),
      },
    };
  }

  function debounce(fn, ms) {
    let t = null;
    return (...args) => {
      clearTimeout(t);
      t = setTimeout(() => fn(...args), ms);
    };
  }

  /** The chat pane and the contact rail of one thread; `panes` switches what a small screen
   * shows (inboxPage). */
  function openChat(id, pane, rail, panes) {
    const base = `/api/comms/threads/${encodeURIComponent(id)}`;
    let closed = false;
    let thread = null;
    let readAt = 0;
    const bubbles = new Map();

    const title = h("span", { class: "title" }, "…");
    const sub = h("span", { class: "muted" });
    const ownerBox = h("span");
    const ownerBtn = h("button", { type: "button", class: "btn", id: "owner-toggle" }, "…");
    ownerBtn.addEventListener("click", () => {
      const next = ownerOf(thread) === "human" ? "bot" : "human";
      act(
        ownerBtn,
        async () => {
          await api("POST", `${base}/owner`, { owner: next });
          await chatRefresh();
        },
        next === "human" ? "You have the conversation; the agent is silent." : "Handed back to the bot.",
      );
    });
    const log = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Messages", id: "chat-log" });
    const liveLine = liveKit.statusLine(id); // what the agent is doing right now
    const input = h("textarea", {
      id: "composer",
      rows: 2,
      placeholder: "Write as a human operator…  (Enter sends, Shift+Enter new line)",
      "aria-label": "Message",
    });
    const sendBtn = h("button", { type: "submit", class: "btn btn-primary" }, "Send");
    // an attachment: uploaded when chosen (POST /api/comms/uploads), sent with the message
    let attached = null;
    const fileInput = h("input", { type: "file", id: "composer-file", "aria-label": "Attach a file", class: "composer-file" });
    const attachNote = h("span", { class: "composer-attach", role: "status" });
    const composer = h("form", { class: "composer", "aria-label": "Reply" }, input, fileInput, attachNote, sendBtn);
    const note = h("div", { class: "composer-note" });
    fileInput.addEventListener("change", async () => {
      const file = fileInput.files && fileInput.files[0];
      attached = null;
      if (!file) return;
      attachNote.textContent = `Uploading ${file.name}…`;
      const path = `/api/comms/uploads?thread_id=${encodeURIComponent(id)}&name=${encodeURIComponent(file.name)}`;
      const r = await fetch(path, {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRF-Token": CSRF, "Content-Type": file.type || "application/octet-stream" },
        credentials: "same-origin",
        body: file,
      });
      const data = await r.json().catch(() => ({}));
      if (!r.ok) {
        fileInput.value = "";
        attachNote.textContent = `Not attached: ${(data.error && data.error.message) || r.status}`;
        return;
      }
      attached = { url: data.url, name: data.name };
      attachNote.textContent = `Attached: ${data.name || file.name}`;
    });
    composer.addEventListener("submit", (e) => {
      e.preventDefault();
      send();
    });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        send();
      }
    });

    async function send() {
      const text = input.value.trim();
      if (operatorsUi.sendsNote()) return text && operatorsUi.note(text); // a private note
      if (!text && !attached) return;
      const body = attached ? { text, attachments: [attached] } : { text };
      const ok = await act(sendBtn, () => api("POST", `${base}/messages`, body));
      if (ok !== undefined) {
        input.value = "";
        attached = null;
        fileInput.value = "";
        attachNote.textContent = "";
        await chatRefresh();
      }
    }

    // on a phone: back to the list; below 1100 px: open the contact rail (console.css)
    const back = h("a", { href: "#/inbox", class: "btn btn-ghost back", "aria-label": "Back to conversations", title: "Back to conversations" }, "←");
    const railBtn = h(
      "button",
      { type: "button", class: "btn rail-toggle", "aria-controls": "contact-rail", "aria-expanded": "false", onclick: () => panes.rail(!rail.closest(".rail-open")) },
      "Contact",
    );
    replace(
      pane,
      h("header", { class: "chat-head" }, back, h("div", { class: "chat-title" }, title, sub), h("span", { class: "spacer" }), ownerBox, ownerBtn, railBtn),
      log,
      liveLine.element,
      note,
      composer,
    );
    const templatesUi = templatesKit.attach({ base, composer, input, sendBtn, refresh: () => chatRefresh() });
    const operatorsUi = operatorsKit.attach({ base, head: pane.querySelector(".chat-head"), composer, input, refresh: () => chatRefresh() });

    // ---- contact rail: fixed forms, lists re-rendered
    const person = h("div", { id: "person" });
    const notes = h("ul", { id: "notes" });
    const tasks = h("ul", { id: "tasks" });
    const calls = h("ul", { id: "calls" });
    const noteText = h("textarea", { rows: 2, placeholder: "Add a note…", "aria-label": "Note", id: "note-text" });
    const noteForm = h(
      "form",
      {
        onsubmit: (e) => {
          e.preventDefault();
          const text = noteText.value.trim();
          if (!text) return;
          act(e.submitter, async () => {
            await api("POST", `${base}/notes`, { text });
            noteText.value = "";
            await chatRefresh();
          }, "Note added.");
        },
      },
      noteText,
      h("button", { class: "btn", type: "submit" }, "Add note"),
    );
    const taskTitle = h("input", { placeholder: "New task…", "aria-label": "Task", id: "task-title" });
    const taskDue = h("input", { type: "datetime-local", "aria-label": "Due", id: "task-due" });
    const taskForm = h(
      "form",
      {
        onsubmit: (e) => {
          e.preventDefault();
          const title = taskTitle.value.trim();
          if (!title) return;
          const body = { title };
          if (taskDue.value) body.due_at = new Date(taskDue.value).getTime() / 1000;
          act(e.submitter, async () => {
            await api("POST", `${base}/tasks`, body);
            taskTitle.value = "";
            taskDue.value = "";
            await chatRefresh();
          }, "Task added.");
        },
      },
      taskTitle,
      taskDue,
      h("button", { class: "btn", type: "submit" }, "Add task"),
    );
    const railClose = h(
      "button",
      { type: "button", class: "btn btn-ghost rail-close", "aria-controls": "contact-rail", "aria-expanded": "false", onclick: () => panes.rail(false) },
      "← Back to the conversation",
    );
    replace(
      rail,
      railClose,
      h("section", { "aria-labelledby": "rail-person" }, h("h3", { id: "rail-person" }, "Contact"), person),
      h("section", { "aria-labelledby": "rail-notes" }, h("h3", { id: "rail-notes" }, "Notes"), notes, noteForm),
      h("section", { "aria-labelledby": "rail-tasks" }, h("h3", { id: "rail-tasks" }, "Tasks"), tasks, taskForm),
      h("section", { "aria-labelledby": "rail-calls" }, h("h3", { id: "rail-calls" }, "Calls"), calls),
    );

    let personSig = null;
    function renderPerson(t) {
      const p = t.person || null;
      const c = t.contact || {};
      const sig = JSON.stringify([p, c, t.phone]);
      if (sig === personSig) return;
      personSig = sig;
      const rows = [];
      const row = (k, v) => v && rows.push(h("dt", {}, k), h("dd", {}, String(v)));
      row("Name", pick(c, "name"));
      row("Phone", pick(c, "phone", "phone_number") || t.phone);
      row("Email", pick(c, "email"));
      row("Channel", `${channelLabel(t.channel)} · inbox ${t.inbox_id ?? "?"}`);
      if (t.channel === "webchat") row("Visitor id", t.channel_key); // the session's uid
      const linked = p
        ? h(
            "div",
            { class: "linked", id: "linked-person" },
            h("dl", {}, h("dt", {}, "Person"), h("dd", { class: "person-name" }, p.name || p.id), p.phone ? [h("dt", {}, "Phone"), h("dd", {}, p.phone)] : null, p.email ? [h("dt", {}, "Email"), h("dd", {}, p.email)] : null, p.company ? [h("dt", {}, "Company"), h("dd", {}, p.company)] : null),
            h(
              "button",
              {
                type: "button",
                class: "btn btn-ghost",
                onclick: (e) =>
                  act(e.currentTarget, async () => {
                    await api("DELETE", `${base}/link-person`);
                    await chatRefresh();
                  }, "Unlinked."),
              },
              "Unlink",
            ),
          )
        : personPicker(t);
      replace(person, h("dl", {}, rows), linked);
    }

    function personPicker(t) {
      const find = h("input", { type: "search", placeholder: "Find or create a person…", "aria-label": "Person", id: "person-search" });
      const results = h("div", { class: "picker" });
      const link = (personId) =>
        act(null, async () => {
          await api("POST", `${base}/link-person`, { person_id: personId });
          personSig = null;
          await chatRefresh();
        }, "Linked.");
      const lookup = debounce(async () => {
        const text = find.value.trim();
        const data = await api("GET", `/api/comms/people${q({ q: text, limit: 8 })}`).catch((e) => (toast(e.message, true), null));
        const people = (data && (data.people || data.items)) || [];
        replace(
          results,
          people.map((p) =>
            h("button", { type: "button", class: "btn person", onclick: () => link(p.id) }, `${p.name}${p.phone ? ` · ${p.phone}` : ""}`),
          ),
          text
            ? h(
                "button",
                {
                  type: "button",
                  class: "btn btn-primary",
                  id: "create-person",
                  onclick: (e) =>
                    act(e.currentTarget, async () => {
                      const phone = pick(t, "contact.phone", "phone");
                      let made;
                      try {
                        made = await api("POST", "/api/comms/people", phone ? { name: text, phone } : { name: text });
                      } catch (err) {
                        if (!phone || err.code !== "invalid_phone") throw err;
                        toast(`${phone} is not a valid phone number: the person is saved without it.`);
                        made = await api("POST", "/api/comms/people", { name: text });
                      }
                      const p = (made && (made.person || made)) || {};
                      await link(p.id);
                    }),
                },
                `Create “${text}” and link`,
              )
            : null,
        );
      }, 200);
      find.addEventListener("input", lookup);
      find.addEventListener("focus", lookup, { once: true });
      return h("div", { class: "picker" }, h("span", { class: "muted" }, "Not linked to a person."), find, results);
    }

    function renderList(ul, rowsIn, render, empty) {
      const sig = JSON.stringify(rowsIn);
      if (ul.dataset.sig === sig) return;
      ul.dataset.sig = sig;
      replace(ul, rowsIn.length ? rowsIn.map(render) : h("li", { class: "muted" }, empty));
    }

    function renderTask(task) {
      const box = h("input", {
        type: "checkbox",
        checked: task.done,
        "aria-label": `Done: ${task.title}`,
        onchange: (e) =>
          act(e.target, async () => {
            await api("PATCH", `/api/comms/tasks/${encodeURIComponent(task.id)}`, { done: e.target.checked });
            await chatRefresh();
          }),
      });
      return h(
        "li",
        { class: task.done ? "task done" : "task" },
        box,
        h("div", {}, h("div", { class: "task-title" }, task.title), task.due_at ? h("div", { class: "small muted" }, `due ${fmtTime(task.due_at, true)}`) : null),
      );
    }

    function renderCall(c) {
      const secs = c.duration_seconds ? `${Math.round(c.duration_seconds)} s` : "";
      return h(
        "li",
        {},
        h("div", {}, `${c.direction === "out" || c.direction === "outbound" ? "Outgoing" : "Incoming"} call `, h("span", { class: "muted" }, `${fmtTime(c.started_at || c.created_at, true)} ${secs}`)),
        c.transcript ? h("div", { class: "small" }, c.transcript) : c.transcript_status && c.transcript_status !== "none" ? h("div", { class: "small muted" }, `transcript: ${c.transcript_status}`) : null,
      );
    }

    function renderMessage(m) {
      if (isHandoffSummary(m)) return renderHandoffSummary(m);
      const operatorLine = operatorsKit.render(m); // private notes, take-over and assignment lines
      if (operatorLine) return operatorLine;
      const noticed = liveKit.notice(m);
      if (noticed) return noticed;
      const who = authorOf(m);
      const kind = who === "customer" ? "in" : who === "system" || who === "note" ? "system" : `out ${who}`;
      return h(
        "div",
        { class: `msg ${kind}`, "data-id": m.id, "data-author": who },
        h("div", { class: "bubble" }, m.text || templatesKit.describe(m) || mediaKit.describe(m) || (pick(m, "content") ?? "")),
        // a reply's rich data, summed up (the customer's channel drew it, or got it as text)
        mediaKit.render(m),
        who === "agent" ? liveKit.data(m) : null,
        h("div", { class: "meta" }, h("span", {}, AUTHOR_LABEL[who]), who === "agent" ? liveKit.agentName(m) : null, who === "human" ? operatorsKit.author(m) : null, h("span", {}, fmtTime(m.created_at)), m.direction === "out" ? statusMark(pick(m, "status", "delivery_status")) : null),
      );
    }

    function renderMessages(msgs) {
      const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
      if (!msgs.length && !bubbles.size) replace(log, h("div", { class: "empty" }, "No messages yet."));
      for (const m of msgs) {
        const key = String(m.id);
        const sig = JSON.stringify(m);
        const old = bubbles.get(key);
        if (old && old.sig === sig) continue;
        const el = renderMessage(m);
        if (old) old.el.replaceWith(el);
        else {
          if (!bubbles.size) replace(log);
          log.append(el);
        }
        bubbles.set(key, { el, sig });
      }
      if (atBottom) log.scrollTop = log.scrollHeight;
    }

    function renderHead(t) {
      title.textContent = threadName(t);
      const status = pick(t, "status");
      sub.textContent = [channelLabel(t.channel), pick(t, "contact.phone", "phone"), STATUS_LABEL[status] || status].filter(Boolean).join(" · ");
      const owner = ownerOf(t);
      replace(ownerBox, ownerPill(owner));
      ownerBtn.textContent = owner === "human" ? "Hand back to bot" : "Take over";
      ownerBtn.title = owner === "human" ? "Let the agent answer again" : "Answer as a human; the agent stays silent";
      note.textContent =
        owner === "human" ? "You are answering this conversation. The agent is silent until you hand it back." : "The agent is answering. Sending a message takes the conversation over.";
    }

    async function chatRefresh() {
      if (closed) return;
      const [detail, msgs] = await Promise.all([api("GET", base), api("GET", `${base}/messages?limit=200`), liveLine.refresh()]);
      if (closed) return;
      thread = (detail && (detail.thread || detail)) || {};
      renderHead(thread);
      templatesUi.update(thread); // the 24 h window: template picker, composer closed
      operatorsUi.update(thread); // the assignee
      renderPerson(thread);
      renderList(notes, thread.notes || [], (n) => h("li", {}, h("div", {}, n.text), h("div", { class: "small muted" }, `${n.author || "operator"} · ${fmtTime(n.created_at, true)}`)), "No notes.");
      renderList(tasks, thread.tasks || [], renderTask, "No tasks.");
      renderList(calls, thread.calls || thread.call_logs || [], renderCall, "No calls.");
      const rows = (msgs && (msgs.messages || msgs.items)) || [];
      renderMessages(rows);
      const newest = rows.length ? toDate(rows[rows.length - 1].created_at) : null;
      if (unreadOf(thread) && (!newest || newest.getTime() > readAt)) {
        readAt = newest ? newest.getTime() : Date.now();
        api("POST", `${base}/read`, {}).catch(() => {});
      }
    }

    return {
      refresh: chatRefresh,
      close: () => {
        closed = true;
      },
      focusComposer: () => input.focus(),
    };
  }

  // ------------------------------------------------------------------ agents

  /** The circuit breaker's state in words a support person reads (its name in the tooltip). */
  const BREAKER = {
    closed: ["pill ok", "Agent reachable", "Turns go to the agent."],
    open: ["pill bad", "Agent paused after failures", "The agent failed several times in a row: for a while turns are not sent to it, and customers get the route's fallback or a person."],
    half_open: ["pill warn", "Trying the agent again", "After a pause, one turn goes to the agent to see whether it answers again."],
  };

  function breakerPill(a) {
    const [cls, text, why] = BREAKER[a.breaker] || ["pill warn", String(a.breaker || "unknown"), ""];
    return h("span", { class: cls, "data-breaker": a.breaker, title: `${why} (circuit breaker: ${a.breaker})` }, text);
  }

  function agentsPage() {
    const body = h("tbody");
    const stamp = h("span", { class: "muted small" });
    append(
      view,
      h(
        "div",
        { class: "page" },
        h("div", { class: "page-head" }, h("h2", {}, "Agents"), h("span", { class: "spacer" }), stamp),
        h(
          "table",
          { class: "grid", id: "agents" },
          h("thead", {}, h("tr", {}, ["Agent", "State", "Transport", "Inboxes", "In flight", "Answered", "p50 / p95", "Health", "Last seen"].map((c) => h("th", { scope: "col" }, c)))),
          body,
        ),
      ),
    );
    return {
      title: "Agents",
      refresh: async () => {
        const data = await api("GET", "/agents/status");
        const agents = data.agents || [];
        replace(
          body,
          agents.length
            ? agents.map((a) =>
                h(
                  "tr",
                  { "data-agent": a.agent_id },
                  h("td", { class: "mono" }, a.agent_id),
                  h("td", {}, h("span", { class: a.connected ? "pill ok" : "pill bad" }, a.connected ? "connected" : "offline")),
                  h("td", {}, a.transport || "—"),
                  h("td", {}, (a.inboxes || []).map((i) => `${channelLabel(i.channel)} ${i.inbox_id}`).join(", ") || "—"),
                  h("td", {}, String(a.in_flight_turns ?? 0)),
                  h("td", {}, String(a.turns_answered ?? 0)),
                  h("td", {}, a.latency_ms_p50 == null ? "—" : `${Math.round(a.latency_ms_p50)} / ${Math.round(a.latency_ms_p95)} ms`),
                  h("td", {}, breakerPill(a), a.consecutive_failures ? h("div", { class: "small muted" }, `${plural(a.consecutive_failures, "failure")} in a row`) : null),
                  h("td", {}, ago(a.last_seen)),
                ),
              )
            : h("tr", {}, h("td", { colspan: 9, class: "empty" }, "No agents are routed yet.")),
        );
        stamp.textContent = `updated ${new Date().toLocaleTimeString()}`;
      },
      failed: (e) => (stamp.textContent = e.message),
    };
  }

  // ------------------------------------------------------------------ routes

  function routesPage() {
    const body = h("tbody");
    const editor = h("div");
    let loaded = false;
    const newBtn = h("button", { type: "button", class: "btn btn-primary", onclick: () => edit(null) }, "New route");
    append(
      view,
      h(
        "div",
        { class: "page" },
        h("div", { class: "page-head" }, h("h2", {}, "Routes"), h("span", { class: "muted" }, "which agent answers which inbox"), h("span", { class: "spacer" }), newBtn),
        editor,
        h(
          "table",
          { class: "grid", id: "routes" },
          h("thead", {}, h("tr", {}, ["Channel", "Inbox", "Agent", "Transport", "Reply", "On failure", "Timeout", "Policies", ""].map((c) => h("th", { scope: "col" }, c)))),
          body,
        ),
      ),
    );

    // where the API reports a field's error (a 422's loc) → the form's control of that name
    const AGENT_FIELDS = ["agent_id", "transport", "websocket_url", "webhook_url", "secret", "base_url", "model", "api_key", "system_prompt", "timeout_seconds"];

    function field(label, control, cls) {
      const path = AGENT_FIELDS.includes(control.name) ? `agent_config.${control.name}` : control.name;
      return h("label", { class: `field ${cls || ""}`, "data-path": path, "data-label": label }, h("span", {}, label), control);
    }

    function edit(m) {
      const isNew = !m;
      m = m || { channel: "whatsapp", inbox_id: 1, reply_mode: "async", on_failure: "fallback", agent_bot_mode: false, agent_config: { transport: "ws-dial-out", timeout_seconds: 30 } };
      const ac = m.agent_config || {};
      const f = {
        channel: h("select", { name: "channel" }, CHANNELS.map((c) => h("option", { value: c }, channelLabel(c)))),
        inbox_id: h("input", { name: "inbox_id", type: "number", min: 0, value: m.inbox_id }),
        agent_id: h("input", { name: "agent_id", value: m.agent_id || ac.agent_id || "", required: true }),
        transport: h("select", { name: "transport" }, ["ws-dial-out", "ws-dial-in", "http-pull", "http-webhook", "openai"].map((c) => h("option", { value: c }, c))),
        websocket_url: h("input", { name: "websocket_url", value: ac.websocket_url || "", placeholder: "ws://agent:8765" }),
        webhook_url: h("input", { name: "webhook_url", value: ac.webhook_url || "", placeholder: "https://agent.example/turns" }),
        secret: h("input", { name: "secret", type: "password", autocomplete: "new-password", value: "", placeholder: ac.secret_set ? "set (leave empty to keep)" : "HMAC key for X-Chatbridge-Signature" }),
        base_url: h("input", { name: "base_url", value: ac.base_url || "", placeholder: "https://api.openai.com/v1" }),
        model: h("input", { name: "model", value: ac.model || "", placeholder: "gpt-4o-mini" }),
        api_key: h("input", { name: "api_key", type: "password", autocomplete: "new-password", value: "", placeholder: ac.api_key_set ? "set (leave empty to keep)" : "empty: CHATBRIDGE_OPENAI_API_KEY" }),
        system_prompt: h("textarea", { name: "system_prompt", rows: 3 }, ac.system_prompt || ""),
        timeout_seconds: h("input", { name: "timeout_seconds", type: "number", min: 1, step: "any", value: m.timeout_seconds ?? ac.timeout_seconds ?? 30 }),
        reply_mode: h("select", { name: "reply_mode" }, ["async", "sync"].map((c) => h("option", { value: c }, word(REPLY_MODE_LABEL, c)))),
        on_failure: h("select", { name: "on_failure" }, ["fallback", "handoff"].map((c) => h("option", { value: c }, word(ON_FAILURE_LABEL, c)))),
        fallback_text: h("input", { name: "fallback_text", value: m.fallback_text || "" }),
        agent_bot_mode: h("input", { name: "agent_bot_mode", type: "checkbox", checked: m.agent_bot_mode }),
      };
      f.channel.value = m.channel;
      f.transport.value = ac.transport || "ws-dial-out";
      f.reply_mode.value = m.reply_mode || "async";
      f.on_failure.value = m.on_failure || "fallback";
      if (!isNew) {
        f.channel.disabled = true;
        f.inbox_id.disabled = true;
      }
      const save = h("button", { type: "submit", class: "btn btn-primary" }, isNew ? "Create route" : "Save route");
      const policies = policiesUi.editor(m.policies);
      const problems = h("div", { class: "result bad wide form-errors", id: "route-errors", role: "alert", hidden: true });
      const form = h(
        "form",
        { class: "form", id: "route-form", "aria-label": isNew ? "New route" : "Edit route", "aria-describedby": "route-errors" },
        problems,
        field("Channel", f.channel),
        field("Inbox id", f.inbox_id),
        field("Agent id", f.agent_id),
        field("Transport", f.transport),
        field("WebSocket URL (dial-out)", f.websocket_url, "only-ws-dial-out"),
        field("Webhook URL", f.webhook_url, "only-http-webhook"),
        field("Signing secret", f.secret, "only-http-webhook"),
        field("Base URL", f.base_url, "only-openai"),
        field("Model", f.model, "only-openai"),
        field("API key", f.api_key, "only-openai"),
        field("System prompt", f.system_prompt, "wide only-openai"),
        field("Timeout (s)", f.timeout_seconds),
        field("Reply mode", f.reply_mode),
        field("On failure", f.on_failure),
        field("Fallback text", f.fallback_text, "wide"),
        h("label", { class: "field check" }, f.agent_bot_mode, "Chatwoot agent-bot inbox (answer only while pending)"),
        policies.element,
        h("div", { class: "form-actions" }, save, h("button", { type: "button", class: "btn btn-ghost", onclick: () => replace(editor) }, "Cancel")),
      );
      // show the fields of the chosen transport only
      const showTransportFields = () => {
        for (const el of form.querySelectorAll("[class*='only-']")) {
          el.hidden = !el.classList.contains(`only-${f.transport.value}`);
        }
      };
      f.transport.addEventListener("change", showTransportFields);
      showTransportFields();
      // an error note goes when its field is edited; the rest stay until the next save
      form.addEventListener("input", (e) => {
        const holder = e.target.closest && e.target.closest(".invalid");
        if (!holder) return;
        holder.classList.remove("invalid");
        for (const note of holder.querySelectorAll(".field-error")) note.remove();
        policiesUi.unmark(e.target);
      });
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const typed = policies.read();
        if (typed.errors.length) {
          policiesUi.placeErrors(form, problems, typed.errors, "Not saved: check the policies.");
          return;
        }
        policiesUi.clearErrors(form, problems);
        const t = f.transport.value;
        const extra = {};
        if (t === "http-webhook") {
          extra.webhook_url = f.webhook_url.value.trim() || null;
          if (f.secret.value) extra.secret = f.secret.value;
        } else if (t === "openai") {
          extra.base_url = f.base_url.value.trim() || null;
          extra.model = f.model.value.trim() || null;
          extra.system_prompt = f.system_prompt.value || null;
          if (f.api_key.value) extra.api_key = f.api_key.value;
          for (const k of ["temperature", "max_tokens", "max_history"]) if (ac[k] != null) extra[k] = ac[k];
        }
        const body = {
          channel: f.channel.value,
          inbox_id: Number(f.inbox_id.value),
          reply_mode: f.reply_mode.value,
          on_failure: f.on_failure.value,
          fallback_text: f.fallback_text.value || null,
          agent_bot_mode: f.agent_bot_mode.checked,
          agent_config: {
            agent_id: f.agent_id.value.trim(),
            transport: t,
            websocket_url: t === "ws-dial-out" ? f.websocket_url.value.trim() || null : null,
            timeout_seconds: Number(f.timeout_seconds.value),
            ...extra,
          },
          policies: typed.value,
          // the route's named agents (docs/multi-agent.md) are kept; the default follows agent_id
          agents: (m.agents || []).map((a) => ({ agent_id: a.default ? f.agent_id.value.trim() : a.agent_id, role: a.role })),
        };
        act(save, async () => {
          try {
            if (isNew) await api("POST", "/config/mappings", body);
            else await api("PUT", `/config/mappings/${body.inbox_id}${q({ channel: body.channel })}`, body);
          } catch (err) {
            if (err.status !== 422 && err.status !== 400) throw err;
            // refused: say which field and why, and keep everything the operator typed
            policiesUi.placeErrors(form, problems, policiesUi.serverErrors(err), "The bridge refused the route.");
            return;
          }
          replace(editor);
          await refresh();
          toast(isNew ? "Route created." : "Route saved.");
        });
      });
      replace(editor, form);
      f.agent_id.focus();
    }

    async function refresh() {
      if (loaded && editor.firstChild) return; // do not pull the table away while editing
      const data = await api("GET", "/config/mappings");
      loaded = true;
      const rows = data.mappings || [];
      replace(
        body,
        rows.length
          ? rows.map((m) =>
              h(
                "tr",
                { "data-route": `${m.channel}:${m.inbox_id}` },
                h("td", {}, channelLabel(m.channel)),
                h("td", {}, String(m.inbox_id)),
                h("td", { class: "mono" }, m.agent_id),
                h("td", {}, (m.agent_config && m.agent_config.transport) || "—", (() => {
                  const ac = m.agent_config || {};
                  const where = ac.websocket_url || ac.webhook_url || (ac.base_url ? `${ac.model || ""} @ ${ac.base_url}` : null);
                  return where ? h("div", { class: "small muted mono" }, where) : null;
                })()),
                h("td", {}, word(REPLY_MODE_LABEL, m.reply_mode)),
                h("td", {}, word(ON_FAILURE_LABEL, m.on_failure), m.fallback_text ? h("div", { class: "small muted" }, m.fallback_text) : null),
                h("td", {}, `${m.timeout_seconds} s`),
                (() => {
                  const parts = policiesUi.summarize(m.policies);
                  return h("td", { class: "policies-cell" }, parts.length ? parts.join(" · ") : h("span", { class: "muted" }, "defaults"));
                })(),
                h(
                  "td",
                  { class: "actions" },
                  h("button", { type: "button", class: "btn", onclick: () => edit(m) }, "Edit"),
                  " ",
                  confirmButton("Delete", "Really delete?", async () => {
                    await api("DELETE", `/config/mappings/${m.inbox_id}${q({ channel: m.channel })}`);
                    await refresh();
                  }, "Route deleted."),
                ),
              ),
            )
          : h("tr", {}, h("td", { colspan: 9, class: "empty" }, "No routes: nothing is answered.")),
      );
    }
    return { title: "Routes", refresh };
  }

  /** A destructive button that asks once, in place (no modal). */
  function confirmButton(label, ask, fn, okMessage) {
    let armed = false;
    const b = h("button", { type: "button", class: "btn btn-danger" }, label);
    b.addEventListener("click", () => {
      if (!armed) {
        armed = true;
        b.textContent = ask;
        setTimeout(() => {
          armed = false;
          b.textContent = label;
        }, 4000);
        return;
      }
      act(b, fn, okMessage);
    });
    return b;
  }

  // ------------------------------------------------------------------ dead letters

  function deadLettersPage() {
    const body = h("tbody");
    const open = new Set();
    let sig = "";
    append(
      view,
      h(
        "div",
        { class: "page" },
        h("div", { class: "page-head" }, h("h2", {}, "Dead letters"), h("span", { class: "muted" }, "deliveries that failed for good")),
        h(
          "table",
          { class: "grid", id: "dead-letters" },
          h("thead", {}, h("tr", {}, ["#", "Channel", "Conversation", "Kind", "Text", "Attempts", "Failed", ""].map((c) => h("th", { scope: "col" }, c)))),
          body,
        ),
      ),
    );

    async function refresh() {
      const data = await api("GET", "/dead-letters?limit=200");
      const rows = data.dead_letters || [];
      const next = JSON.stringify([rows, [...open]]);
      if (next === sig) return;
      sig = next;
      replace(
        body,
        rows.length
          ? rows.map((d) => {
              const key = String(d.id);
              const toggle = h(
                "button",
                {
                  type: "button",
                  class: "btn btn-ghost",
                  "aria-expanded": String(open.has(key)),
                  onclick: () => {
                    open.has(key) ? open.delete(key) : open.add(key);
                    refresh();
                  },
                },
                open.has(key) ? "Hide" : "Inspect",
              );
              return [
                h(
                  "tr",
                  { "data-dead-letter": key },
                  h("td", { class: "mono" }, key),
                  h("td", {}, channelLabel(d.channel)),
                  h(
                    "td",
                    {},
                    h(
                      "a",
                      { href: `#/inbox/${encodeURIComponent(d.conversation_id)}`, class: "conversation-link", title: "Open the conversation" },
                      threadName({ channel: d.channel, channel_key: d.channel_key || d.conversation_id }),
                    ),
                  ),
                  h("td", {}, word(DELIVERY_KIND_LABEL, d.kind)),
                  h("td", {}, (d.text || "").slice(0, 80)),
                  h("td", {}, String(d.attempts)),
                  h("td", {}, fmtTime(d.created_at, true)),
                  h(
                    "td",
                    { class: "actions" },
                    toggle,
                    " ",
                    h(
                      "button",
                      {
                        type: "button",
                        class: "btn btn-primary",
                        onclick: (e) =>
                          act(e.currentTarget, async () => {
                            await api("POST", `/dead-letters/${d.id}/retry`);
                            await refresh();
                          }, `Dead letter ${key} queued again.`),
                      },
                      "Retry",
                    ),
                    " ",
                    confirmButton("Discard", "Really discard?", async () => {
                      await api("POST", `/dead-letters/${d.id}/discard`);
                      await refresh();
                    }, `Dead letter ${key} discarded.`),
                  ),
                ),
                open.has(key)
                  ? h(
                      "tr",
                      { class: "detail" },
                      h(
                        "td",
                        { colspan: 8 },
                        h("pre", {}, `text: ${d.text || ""}\n\nlast error: ${d.last_error || "—"}\n\nconversation: ${d.conversation_id}\nturn: ${d.turn_id || "—"}`),
                      ),
                    )
                  : null,
              ];
            })
          : h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No dead letters. Every delivery got through.")),
      );
    }
    return { title: "Dead letters", refresh };
  }

  // ------------------------------------------------------------------ settings

  const CHOICES = {
    provider: [["none", "None (WhatsApp off)"], ["mock", "Mock (for trying out)"], ["waha", "WAHA"], ["evolution", "Evolution API"], ["meta_cloud", "Meta Cloud API"]],
    transcription_provider: [["none", "Off"], ["openai", "OpenAI-compatible API"], ["local", "Local (on this machine)"]],
  };
  /** What each comms setting is called on the page: written for people, one by one. */
  const SETTING_LABEL = {
    provider: "Provider",
    instance_inboxes: "Inbox of each instance or number (JSON)",
    default_inbox_id: "Default inbox",
    default_country: "Default country",
    auto_link: "Link threads to people by phone number",
    groups_enabled: "Answer group chats",
    status_broadcasts_enabled: "Receive status updates",
    send_read_receipts: "Send read receipts",
    broadcast_rate: "Broadcast pace (messages per second)",
    broadcast_meta_rate: "Broadcast pace on Meta (messages per second)",
    waha_base_url: "WAHA URL",
    waha_session: "WAHA session",
    waha_api_key: "WAHA API key",
    waha_hmac_key: "WAHA webhook HMAC key",
    waha_lid_lookup: "Look up the phone number behind hidden (@lid) chats",
    evolution_base_url: "Evolution API URL",
    evolution_instance: "Evolution API instance",
    evolution_api_key: "Evolution API key",
    evolution_webhook_header_name: "Webhook header name",
    evolution_webhook_header_value: "Webhook header value",
    evolution_jwt_key: "Webhook JWT key",
    meta_graph_url: "Graph API URL",
    meta_api_version: "Graph API version",
    meta_phone_number_id: "Phone number ID",
    meta_access_token: "Access token",
    meta_app_secret: "App secret",
    meta_verify_token: "Webhook verify token",
    meta_waba_id: "WhatsApp Business Account ID",
    transcription_provider: "Transcription service",
    transcription_base_url: "Transcription API URL",
    transcription_api_key: "Transcription API key",
    transcription_model: "Transcription model",
    recordings_dir: "Recordings folder",
  };
  // a setting newer than the table still gets a readable label (the settings test keeps the
  // table complete)
  const settingLabel = (k) => SETTING_LABEL[k] || k.charAt(0).toUpperCase() + k.slice(1).replace(/_/g, " ");
  const GROUPS = [
    ["WhatsApp", (k) => !/^(waha|evolution|meta|transcription|recordings)_/.test(k)],
    ["WAHA", (k) => k.startsWith("waha_")],
    ["Evolution API", (k) => k.startsWith("evolution_")],
    ["Meta Cloud API", (k) => k.startsWith("meta_")],
    ["Calls and transcripts", (k) => /^(transcription|recordings)_/.test(k)],
  ];

  function settingsPage() {
    const holder = h("div", { class: "page" });
    const result = h("div", { id: "provider-result", role: "status" });
    append(view, holder);
    let loaded = false;

    function render(s) {
      const secrets = new Set(Object.keys(s).filter((k) => k.endsWith("_set")).map((k) => k.slice(0, -4)));
      const controls = {};
      const keys = Object.keys(s).filter((k) => !k.endsWith("_set"));
      const control = (k) => {
        const v = s[k];
        let el;
        if (secrets.has(k))
          el = h("input", { type: "password", name: k, autocomplete: "off", placeholder: s[`${k}_set`] ? "set (type to replace)" : "not set" });
        else if (CHOICES[k]) {
          el = h("select", { name: k }, CHOICES[k].map(([c, text]) => h("option", { value: c }, text)));
          el.value = v;
        } else if (typeof v === "boolean") el = h("input", { type: "checkbox", name: k, checked: v });
        else if (typeof v === "number") el = h("input", { type: "number", name: k, value: v, step: "any" });
        else if (v && typeof v === "object") el = h("textarea", { name: k, rows: 2, class: "mono", value: JSON.stringify(v) });
        else el = h("input", { name: k, value: v ?? "" });
        controls[k] = el;
        const label = settingLabel(k);
        return el.type === "checkbox" ? h("label", { class: "field check" }, el, label) : h("label", { class: "field" }, h("span", {}, label), el);
      };
      const save = h("button", { type: "submit", class: "btn btn-primary" }, "Save settings");
      const test = h("button", { type: "button", class: "btn", id: "provider-test" }, "Test connection");
      const form = h(
        "form",
        { id: "settings-form", class: "settings", "aria-label": "Comms settings" },
        h("div", { class: "form-actions" }, save, test, templatesKit.syncButton()),
        result,
        GROUPS.map(([name, match]) => {
          const mine = keys.filter(match);
          return mine.length ? h("fieldset", {}, h("legend", {}, name), h("div", { class: "form" }, mine.map(control))) : null;
        }),
      );
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const changes = {};
        for (const k of keys) {
          const el = controls[k];
          let v;
          if (secrets.has(k)) {
            if (!el.value) continue;
            v = el.value;
          } else if (el.type === "checkbox") v = el.checked;
          else if (el.type === "number") v = el.value === "" ? null : Number(el.value);
          else if (el.tagName === "TEXTAREA") {
            try {
              v = JSON.parse(el.value || "null");
            } catch (_) {
              toast(`${settingLabel(k)}: not valid JSON`, true);
              return;
            }
          } else v = el.value === "" && s[k] === null ? null : el.value;
          if (JSON.stringify(v) !== JSON.stringify(s[k])) changes[k] = v;
        }
        if (!Object.keys(changes).length) {
          toast("Nothing changed.");
          return;
        }
        act(save, async () => {
          const out = await api("PATCH", "/api/comms/settings", changes);
          render((out && (out.settings || out)) || s);
        }, "Settings saved.");
      });
      test.addEventListener("click", () =>
        act(test, async () => {
          replace(result, "Testing…");
          result.className = "result";
          try {
            const out = (await api("POST", "/api/comms/provider/test", {})) || {};
            const ok = out.ok !== false;
            result.className = ok ? "result ok" : "result bad";
            const lines = (items, cls) => (items || []).map((p) => h("li", { class: cls }, String(p)));
            const details = Object.entries(out.details || {}).map(([k, v]) => h("li", { class: "muted" }, `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`));
            replace(
              result,
              h("strong", {}, ok ? `Connected to ${out.provider}.` : `${out.provider}: not working.`),
              h("ul", {}, lines(out.problems, "status-failed"), lines(out.warnings, "muted"), details),
            );
          } catch (e) {
            result.className = "result bad";
            replace(result, h("strong", {}, "Failed. "), e.message);
          }
        }),
      );
      replace(holder, h("div", { class: "page-head" }, h("h2", {}, "Settings"), h("span", { class: "muted" }, "WhatsApp, linking and calls. Saved here, they win over the environment.")), form);
    }

    return {
      title: "Settings",
      refresh: async () => {
        if (loaded) return; // loaded once: polling must not undo the operator's typing
        const data = await api("GET", "/api/comms/settings");
        loaded = true;
        render((data && (data.settings || data)) || {});
      },
      failed: (e) => replace(holder, h("div", { class: "empty" }, e.message)),
    };
  }

  const PAGES = {
    inbox: inboxPage,
    agents: agentsPage,
    routes: routesPage,
    "dead-letters": deadLettersPage,
    broadcasts: () => broadcastsKit.page(view),
    ...operatorsKit.pages(view), // operators, audit (console-operators.js)
    settings: settingsPage,
  };

  // ------------------------------------------------------------------ keyboard, shell

  let pendingG = false;
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
    if (e.key === "Escape" && typing) {
      t.blur();
      return;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (pendingG) {
      pendingG = false;
      const to = { i: "inbox", a: "agents", r: "routes", d: "dead-letters", b: "broadcasts", s: "settings" }[e.key];
      if (to) {
        e.preventDefault();
        location.hash = `#/${to}`;
      }
      return;
    }
    if (e.key === "g") {
      pendingG = true;
      setTimeout(() => (pendingG = false), 1200);
      return;
    }
    if (e.key === "?") {
      document.getElementById("help").showModal();
      return;
    }
    const fn = current && current.keys && current.keys[e.key];
    if (fn) {
      e.preventDefault();
      fn();
    }
  });

  // on a phone the pages are behind a menu button (console.css); choosing one closes it
  const nav = document.querySelector(".nav");
  const menuBtn = document.getElementById("menu-btn");
  const showMenu = (open) => {
    nav.classList.toggle("open", open);
    if (menuBtn) menuBtn.setAttribute("aria-expanded", String(open));
  };
  if (menuBtn) menuBtn.addEventListener("click", () => showMenu(!nav.classList.contains("open")));
  window.addEventListener("hashchange", () => showMenu(false));

  document.getElementById("help-btn").addEventListener("click", () => document.getElementById("help").showModal());
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/console/logout", { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF }, body: "{}", credentials: "same-origin" });
    location.assign("/console/login");
  });
  // on a phone a table's rows are cards (console.css): each cell is labelled by its column's
  // heading, for every table a page draws (now or at a later refresh)
  function labelCells() {
    for (const table of view.querySelectorAll("table.grid")) {
      const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
      for (const row of table.querySelectorAll("tbody tr")) {
        [...row.children].forEach((td, i) => {
          if (heads[i] && !td.hasAttribute("colspan") && !td.dataset.label) td.dataset.label = heads[i];
        });
      }
    }
  }
  new MutationObserver(labelCells).observe(view, { childList: true, subtree: true });
  window.addEventListener("hashchange", route);
  operatorsKit.start(); // who is signed in; an agent-role operator's nav has no admin pages
  route();
})();
