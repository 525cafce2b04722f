/* Operators in the console: who is signed in, the team's accounts, assignment, private
 * notes, canned replies and the audit log.
 *
 * Loaded before console.js, which calls window.chatbridgeOperators({h, api, act, toast,
 * replace, q}) once. The kit:
 * - .start(): asks GET /api/operators/me, shows "Signed in as …" in the sidebar and hides
 *   the admin pages (routes, settings, operators, audit log) from an agent-role operator;
 * - .pages: the #/operators and #/audit pages (admins);
 * - .viewTabs(filters, refresh): the inbox's Mine / Unassigned / All tabs (?view=…);
 * - .threadTag(thread): the assignee pill of a row of the list;
 * - .attach({base, head, composer, input, refresh}): the assignee box in the thread's header,
 *   the "Private note" switch of the composer, and the "/" canned-reply picker;
 * - .render(message): private notes and operators' own lines (take-over, assignment), inline;
 * - .author(message): the operator's name under a human message.
 * Everything is written as text, never HTML.
 */
(() => {
  "use strict";

  window.chatbridgeOperators = function chatbridgeOperators({ h, api, act, toast, replace, q }) {
    let me = null; // {id, name, email, role, via}
    let team = null; // [{id, name, role, status}] for the assignee picker, loaded once
    let canned = null; // a promise of [{id, shortcut, text, ...}] for the "/" picker, loaded once
    const ADMIN_PAGES = ["routes", "settings", "operators", "audit"];
    const when = (t) => new Date(t * 1000).toLocaleString([], { dateStyle: "short", timeStyle: "short" });

    function isAdmin() {
      return !me || me.role === "admin";
    }

    async function start() {
      try {
        me = ((await api("GET", "/api/operators/me")) || {}).operator || null;
      } catch (_) {
        me = null;
      }
      const foot = document.querySelector(".nav-foot");
      if (me && foot && !document.getElementById("signed-in")) {
        const label = me.id ? `${me.name} · ${me.role}` : "Admin key";
        const own = me.id ? h("button", { type: "button", class: "btn btn-ghost small", id: "own-password", onclick: passwordDialog }, "Change password") : null;
        foot.prepend(h("div", { class: "signed-in small", id: "signed-in", title: me.email || "" }, h("span", { class: "muted" }, "Signed in as "), h("strong", {}, label), own));
      }
      if (me) document.body.dataset.role = me.role; // console-operators.css hides admin actions
      for (const a of document.querySelectorAll(".nav a[data-page]")) {
        if (ADMIN_PAGES.includes(a.dataset.page)) a.hidden = !isAdmin();
      }
      return me;
    }

    /** Change your own password: the current one again, then the new one; log in again. */
    function passwordDialog() {
      const current = h("input", { type: "password", id: "current-password", autocomplete: "current-password", required: true });
      const next = h("input", { type: "password", id: "new-password", autocomplete: "new-password", minlength: 10, required: true });
      const error = h("p", { class: "login-error", role: "alert" });
      const dialog = h(
        "dialog",
        { class: "help", "aria-label": "Change password" },
        h(
          "form",
          {
            class: "login-form",
            onsubmit: async (e) => {
              e.preventDefault();
              try {
                await api("POST", "/api/operators/me/password", { current_password: current.value, new_password: next.value });
                location.assign("/console/login"); // the old sessions have ended
              } catch (err) {
                error.textContent = err.message;
              }
            },
          },
          h("h2", {}, "Change password"),
          h("label", { for: "current-password" }, "Current password"),
          current,
          h("label", { for: "new-password" }, "New password (at least 10 characters)"),
          next,
          error,
          h("div", { class: "row" }, h("button", { type: "submit", class: "btn btn-primary" }, "Change"), h("button", { type: "button", class: "btn", onclick: () => dialog.close() }, "Cancel")),
        ),
      );
      dialog.addEventListener("close", () => dialog.remove());
      document.body.append(dialog);
      dialog.showModal();
    }

    async function loadTeam() {
      if (!team) team = ((await api("GET", "/api/operators")) || {}).operators || [];
      return team;
    }

    // ------------------------------------------------------------ inbox

    function viewTabs(filters, refresh) {
      filters.view = filters.view || "all";
      const tabs = [
        ["mine", "Mine"],
        ["unassigned", "Unassigned"],
        ["all", "All"],
      ];
      const box = h("div", { class: "view-tabs", role: "tablist", "aria-label": "Which conversations" });
      const buttons = tabs.map(([value, label]) =>
        h(
          "button",
          {
            type: "button",
            role: "tab",
            class: "view-tab",
            "data-view": value,
            "aria-selected": String(filters.view === value),
            onclick: () => {
              filters.view = value;
              for (const b of buttons) b.setAttribute("aria-selected", String(b.dataset.view === value));
              refresh();
            },
          },
          label,
        ),
      );
      replace(box, ...buttons);
      return box;
    }

    function threadTag(t) {
      const a = t && t.assignee;
      if (!a) return null;
      const mine = me && a.id === me.id;
      return h("span", { class: `pill assignee${mine ? " mine" : ""}`, title: `assigned to ${a.name}`, "data-assignee": a.id }, mine ? "you" : a.name);
    }

    // ------------------------------------------------------------ thread

    function attach({ base, head, composer, input, refresh }) {
      // ---- assignee, in the thread's header
      const label = h("span", { class: "assignee-label", id: "assignee" }, "Unassigned");
      const picker = h("select", { id: "assignee-select", "aria-label": "Assign to" });
      const mineBtn = h("button", { type: "button", class: "btn", id: "assign-me" }, "Assign to me");
      const box = h("span", { class: "assignee-box" }, label, picker, mineBtn);
      if (head) head.insertBefore(box, head.querySelector(".spacer") ? head.querySelector(".spacer").nextSibling : null);
      let current = null;

      async function assign(operatorId, button) {
        await act(button, async () => {
          await api("POST", `${base}/assignee`, { operator_id: operatorId });
          await refresh();
        });
      }
      mineBtn.addEventListener("click", () => assign(current && me && current.id === me.id ? null : "me", mineBtn));
      picker.addEventListener("change", () => assign(picker.value || null, picker));
      if (!me || !me.id) mineBtn.hidden = true; // the admin key is nobody's assignee

      async function fillPicker() {
        const ops = (await loadTeam().catch(() => [])).filter((o) => o.status === "active" || !o.status);
        replace(picker, h("option", { value: "" }, "Nobody"), ...ops.map((o) => h("option", { value: o.id }, o.name)));
        picker.value = current ? current.id : "";
      }
      fillPicker();

      function update(thread) {
        current = (thread && thread.assignee) || null;
        const mine = current && me && current.id === me.id;
        label.textContent = current ? `Assigned to ${mine ? "you" : current.name}` : "Unassigned";
        label.dataset.assignee = current ? current.id : "";
        mineBtn.textContent = mine ? "Unassign me" : "Assign to me";
        if (picker.options.length) picker.value = current ? current.id : "";
      }

      // ---- private note switch, beside Send
      const noteSwitch = h("input", { type: "checkbox", id: "private-note-toggle" });
      const switchLabel = h("label", { class: "note-switch", title: "Only your team sees it; never sent" }, noteSwitch, "Private note");
      composer.insertBefore(switchLabel, composer.querySelector("button[type=submit]"));
      noteSwitch.addEventListener("change", () => {
        composer.classList.toggle("noting", noteSwitch.checked);
        input.placeholder = noteSwitch.checked ? "Private note for your team (never sent)…" : "Write as a human operator…  (Enter sends, Shift+Enter new line)";
      });

      async function note(text) {
        const ok = await act(null, () => api("POST", `${base}/private-notes`, { text }), "Private note added.");
        if (ok === undefined) return false;
        input.value = "";
        await refresh();
        return true;
      }

      // ---- canned replies: "/" at the start of the composer
      const list = h("ul", { class: "canned-list", id: "canned-list", role: "listbox", "aria-label": "Canned replies", hidden: true });
      composer.append(list);
      let matches = [];
      let active = 0;

      function pick(i) {
        const c = matches[i];
        if (!c) return;
        input.value = c.text;
        close();
        input.focus();
      }

      function close() {
        list.hidden = true;
        matches = [];
      }

      function draw() {
        replace(
          list,
          ...matches.map((c, i) =>
            h(
              "li",
              { role: "option", class: "canned", "aria-selected": String(i === active), "data-shortcut": c.shortcut, onmousedown: (e) => (e.preventDefault(), pick(i)) },
              h("strong", {}, `/${c.shortcut}`),
              h("span", { class: "muted" }, ` ${c.text.length > 80 ? c.text.slice(0, 80) + "…" : c.text}`),
            ),
          ),
        );
        list.hidden = !matches.length;
      }

      const typedShortcut = () => {
        const m = /^\/([a-z0-9_-]*)$/i.exec(input.value);
        return m ? m[1].toLowerCase() : null;
      };
      input.addEventListener("input", async () => {
        if (typedShortcut() === null) return close();
        if (!canned) canned = api("GET", "/api/canned-replies").then((d) => (d && d.canned_replies) || [], () => []);
        const all = await canned; // loaded once, shared by the keystrokes typed meanwhile
        const typed = typedShortcut(); // what the composer holds now, not at the keystroke
        if (typed === null) return close();
        matches = all.filter((c) => c.shortcut.startsWith(typed)).slice(0, 8);
        active = Math.min(active, Math.max(0, matches.length - 1));
        draw();
      });
      // capture: runs before the composer's own Enter-sends handler
      input.addEventListener(
        "keydown",
        (e) => {
          if (list.hidden || !matches.length) return;
          if (e.key === "ArrowDown" || e.key === "ArrowUp") {
            e.preventDefault();
            active = (active + (e.key === "ArrowDown" ? 1 : matches.length - 1)) % matches.length;
            draw();
          } else if (e.key === "Enter" || e.key === "Tab") {
            e.preventDefault();
            e.stopImmediatePropagation();
            pick(active);
          } else if (e.key === "Escape") {
            e.stopImmediatePropagation();
            close();
          }
        },
        true,
      );
      input.addEventListener("blur", () => setTimeout(close, 150));

      return { update, note, sendsNote: () => noteSwitch.checked };
    }

    /** Private notes and operators' lines in the thread; null for anything else. */
    function render(m) {
      if (m.direction !== "note" || m.author !== "human") return null;
      const meta = m.meta || {};
      if (meta.kind === "owner_change" || meta.kind === "assignment") {
        return h("div", { class: "msg system operator-line", "data-id": m.id, "data-kind": meta.kind }, h("div", { class: "bubble" }, m.text || ""), h("div", { class: "meta" }, h("span", {}, when(m.created_at))));
      }
      return h(
        "section",
        { class: "msg private-note", "data-id": m.id, "data-kind": "private_note", "aria-label": "Private note" },
        h("div", { class: "note-head" }, h("strong", {}, meta.operator_name || "Operator"), h("span", { class: "muted" }, " — private note, never sent")),
        h("div", { class: "bubble" }, m.text || ""),
        h("div", { class: "meta" }, h("span", {}, when(m.created_at))),
      );
    }

    /** The operator's name on a human message (who answered). */
    function author(m) {
      const name = m.meta && m.meta.operator_name;
      return name ? h("span", { class: "operator-name", "data-operator": m.meta.operator_id || "" }, name) : null;
    }

    // ------------------------------------------------------------ admin pages

    function operatorsPage(view) {
      const body = h("tbody");
      const created = h("div", { class: "invite-result", id: "invite-result", role: "status" });
      const email = h("input", { type: "email", id: "op-email", required: true, "aria-label": "Email", placeholder: "ada@example.com" });
      const name = h("input", { id: "op-name", required: true, "aria-label": "Name", placeholder: "Ada Lovelace" });
      const role = h("select", { id: "op-role", "aria-label": "Role" }, h("option", { value: "agent" }, "Agent"), h("option", { value: "admin" }, "Admin"));
      const password = h("input", { type: "password", id: "op-password", "aria-label": "Password", placeholder: "Password (empty: invite)", autocomplete: "new-password" });
      const form = h(
        "form",
        {
          class: "row operator-form",
          "aria-label": "New operator",
          onsubmit: (e) => {
            e.preventDefault();
            const sent = { email: email.value.trim(), name: name.value.trim(), role: role.value };
            if (password.value) sent.password = password.value;
            act(e.submitter, async () => {
              const out = await api("POST", "/api/operators", sent);
              email.value = name.value = password.value = "";
              team = null;
              replace(created, out.invite_url ? h("span", {}, `Invitation for ${out.operator.name}: `, h("code", { class: "mono" }, out.invite_url)) : `${out.operator.name} can log in now.`);
              await refresh();
            });
          },
        },
        email,
        name,
        role,
        password,
        h("button", { type: "submit", class: "btn btn-primary" }, "Add operator"),
      );
      replace(
        view,
        h(
          "section",
          { class: "page operators-page" },
          h("header", { class: "page-head" }, h("h1", {}, "Operators")),
          h("p", { class: "muted" }, "People who answer in this console. Agents answer conversations; admins also manage routes, settings, operators and dead letters."),
          form,
          created,
          h("table", { class: "table", id: "operators" }, h("thead", {}, h("tr", {}, ...["Name", "Email", "Role", "Status", "Last login", ""].map((t) => h("th", {}, t)))), body),
        ),
      );

      function row(o) {
        const roleSel = h("select", { "aria-label": `Role of ${o.name}` }, h("option", { value: "agent" }, "Agent"), h("option", { value: "admin" }, "Admin"));
        roleSel.value = o.role;
        roleSel.addEventListener("change", () =>
          act(roleSel, async () => {
            await api("PATCH", `/api/operators/${o.id}`, { role: roleSel.value });
            await refresh();
          }, `${o.name} is now ${roleSel.value === "admin" ? "an admin" : "an agent"}.`),
        );
        const toggle = h("button", { type: "button", class: "btn btn-ghost" }, o.active ? "Disable" : "Enable");
        toggle.addEventListener("click", () =>
          act(toggle, async () => {
            await api("PATCH", `/api/operators/${o.id}`, { active: !o.active });
            await refresh();
          }),
        );
        const mine = me && me.id === o.id;
        const extra = h("span", { class: "row-actions" });
        if (o.status === "invited") {
          const link = h("button", { type: "button", class: "btn btn-ghost" }, "New invitation link");
          link.addEventListener("click", () =>
            act(link, async () => {
              const out = await api("POST", `/api/operators/${o.id}/invitation`);
              replace(created, h("span", {}, `Invitation for ${o.name}: `, h("code", { class: "mono" }, out.invite_url)));
            }),
          );
          extra.append(link);
        } else if (!mine) {
          const pw = h("input", { type: "password", "aria-label": `New password for ${o.name}`, placeholder: "New password", autocomplete: "new-password", hidden: true });
          const set = h("button", { type: "button", class: "btn btn-ghost" }, "Set password…");
          set.addEventListener("click", () => {
            if (pw.hidden) {
              pw.hidden = false;
              set.textContent = "Save password";
              pw.focus();
              return;
            }
            act(set, async () => {
              await api("PATCH", `/api/operators/${o.id}`, { password: pw.value });
              pw.value = "";
              pw.hidden = true;
              set.textContent = "Set password…";
            }, `${o.name}'s password is set; their sessions have ended.`);
          });
          extra.append(pw, set);
        }
        return h(
          "tr",
          { "data-id": o.id },
          h("td", {}, o.name, mine ? h("span", { class: "muted" }, " (you)") : null),
          h("td", {}, o.email),
          h("td", {}, mine ? o.role : roleSel),
          h("td", {}, h("span", { class: `pill status-${o.status}` }, o.status)),
          h("td", {}, o.last_login_at ? when(o.last_login_at) : "never"),
          h("td", {}, extra, mine ? null : toggle),
        );
      }

      let sig = null; // re-drawn only when something changed (the page polls)
      async function refresh() {
        const data = await api("GET", "/api/operators");
        const rows = (data && data.operators) || [];
        if (JSON.stringify(rows) === sig) return;
        sig = JSON.stringify(rows);
        replace(body, ...rows.map(row));
      }
      return { title: "Operators", refresh: () => refresh(), failed: (e) => replace(body, h("tr", {}, h("td", { colspan: 6 }, e.message))) };
    }

    function cannedPage(view) {
      const body = h("tbody");
      const shortcut = h("input", { id: "canned-shortcut", required: true, "aria-label": "Shortcut", placeholder: "refund", pattern: "[a-z0-9][a-z0-9_-]*", maxlength: 40 });
      const text = h("textarea", { id: "canned-text", required: true, rows: 2, "aria-label": "Text", placeholder: "The reply, as the customer will read it" });
      const shared = h("input", { type: "checkbox", id: "canned-shared" });
      const sharedLabel = h("label", { class: "note-switch" }, shared, "Shared with the team");
      sharedLabel.hidden = !isAdmin();
      const form = h(
        "form",
        {
          class: "row operator-form",
          "aria-label": "New canned reply",
          onsubmit: (e) => {
            e.preventDefault();
            const sent = { shortcut: shortcut.value.trim().toLowerCase(), text: text.value.trim() };
            if (shared.checked) sent.shared = true;
            act(e.submitter, async () => {
              await api("POST", "/api/canned-replies", sent);
              shortcut.value = text.value = "";
              shared.checked = false;
              canned = null; // the composer's picker loads them again
              await refresh();
            }, "Canned reply saved.");
          },
        },
        h("span", { class: "muted" }, "/"),
        shortcut,
        text,
        sharedLabel,
        h("button", { type: "submit", class: "btn btn-primary" }, "Add"),
      );
      replace(
        view,
        h(
          "section",
          { class: "page canned-page" },
          h("header", { class: "page-head" }, h("h1", {}, "Canned replies")),
          h("p", { class: "muted" }, "Type / and the start of a shortcut in a conversation's reply box, then Enter."),
          form,
          h("table", { class: "table", id: "canned" }, h("thead", {}, h("tr", {}, ...["Shortcut", "Text", "Whose", ""].map((t) => h("th", {}, t)))), body),
        ),
      );
      function row(c) {
        const mayChange = isAdmin() || (me && c.owner_id === me.id);
        const del = h("button", { type: "button", class: "btn btn-ghost" }, "Delete");
        del.addEventListener("click", () =>
          act(del, async () => {
            await api("DELETE", `/api/canned-replies/${c.id}`);
            canned = null;
            await refresh();
          }, `/${c.shortcut} deleted.`),
        );
        return h(
          "tr",
          { "data-shortcut": c.shortcut },
          h("td", {}, h("code", { class: "mono" }, `/${c.shortcut}`)),
          h("td", {}, c.text),
          h("td", {}, c.shared ? "team" : me && c.owner_id === me.id ? "yours" : "an operator's"),
          h("td", {}, mayChange ? del : null),
        );
      }
      let sig = null;
      async function refresh() {
        const data = await api("GET", `/api/canned-replies${q({ everyone: isAdmin() ? "true" : "" })}`);
        const rows = (data && data.canned_replies) || [];
        if (JSON.stringify(rows) === sig) return;
        sig = JSON.stringify(rows);
        replace(body, ...(rows.length ? rows.map(row) : [h("tr", {}, h("td", { colspan: 4, class: "muted" }, "None yet."))]));
      }
      return { title: "Canned replies", refresh: () => refresh(), failed: (e) => replace(body, h("tr", {}, h("td", { colspan: 4 }, e.message))) };
    }

    function auditPage(view) {
      const body = h("tbody");
      const filter = h("select", { id: "audit-filter", "aria-label": "Action" }, ...[["", "Every action"], ["route.", "Routes"], ["settings.", "Settings"], ["operator.", "Operators"], ["dead_letter.", "Dead letters"]].map(([v, t]) => h("option", { value: v }, t)));
      filter.addEventListener("change", () => refresh());
      replace(
        view,
        h(
          "section",
          { class: "page audit-page" },
          h("header", { class: "page-head" }, h("h1", {}, "Audit log"), filter),
          h("p", { class: "muted" }, "Who changed routes, settings, operators and dead letters, newest first."),
          h("table", { class: "table", id: "audit" }, h("thead", {}, h("tr", {}, ...["When", "Who", "Action", "Target", "Details"].map((t) => h("th", {}, t)))), body),
        ),
      );
      async function refresh() {
        const data = await api("GET", `/api/audit${q({ action: filter.value, limit: 200 })}`);
        const rows = (data && data.entries) || [];
        replace(
          body,
          ...(rows.length
            ? rows.map((e) =>
                h(
                  "tr",
                  { "data-action": e.action },
                  h("td", {}, when(e.at)),
                  h("td", {}, e.actor),
                  h("td", {}, h("code", { class: "mono" }, e.action)),
                  h("td", {}, e.target || ""),
                  h("td", { class: "small mono" }, Object.keys(e.details || {}).length ? JSON.stringify(e.details) : ""),
                ),
              )
            : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, "Nothing yet."))]),
        );
      }
      return { title: "Audit log", refresh: () => refresh(), failed: (e) => replace(body, h("tr", {}, h("td", { colspan: 5 }, e.message))) };
    }

    return {
      start,
      isAdmin,
      me: () => me,
      viewTabs,
      threadTag,
      attach,
      render,
      author,
      pages: (view) => ({ operators: () => operatorsPage(view), audit: () => auditPage(view), canned: () => cannedPage(view) }),
    };
  };
})();
