/*!
 * Chatbridge web chat widget. Vanilla JS, no dependencies, no build step.
 *
 *   <script src="https://bridge.example/widget.js"
 *           data-bridge="https://bridge.example" data-inbox="1" defer></script>
 *
 * Speaks the native web chat API and the live WebSocket protocol of docs/webchat.md:
 * a session kept in localStorage, history on start, a WebSocket with heartbeat, resume and
 * reconnect (exponential backoff with full jitter), an offline queue with client message ids,
 * and long-polling when WebSockets cannot connect. Message text is only ever set with
 * textContent. window.Chatbridge = {open(), close(), toggle(), state()} for pages and tests.
 */
(function () {
  "use strict";

  if (window.Chatbridge && window.Chatbridge.version) return; // embedded twice: keep the first

  // ------------------------------------------------------------------ configuration -----
  var script = document.currentScript;
  if (!script) {
    var all = document.querySelectorAll("script[src*='widget.js']");
    script = all[all.length - 1];
  }
  if (!script) return;
  var data = script.dataset || {};
  var scriptUrl = new URL(script.src, location.href);
  var BRIDGE = (data.bridge || scriptUrl.origin).replace(/\/+$/, "");
  var INBOX = parseInt(data.inbox || "1", 10) || 0;
  var TITLE = data.title || "Chat with us";
  var POSITION = data.position === "left" ? "left" : "right";
  var STORE_KEY = "chatbridge:" + BRIDGE + ":" + INBOX;
  var QUEUE_KEY = STORE_KEY + ":queue";
  var WS_BASE = BRIDGE.replace(/^http(s?):/i, "ws$1:");

  var PING_MS = 20000; // heartbeat interval
  var DEAD_MS = 3 * PING_MS; // three silent intervals: the connection is dead
  var BACKOFF_BASE_MS = 500;
  var BACKOFF_CAP_MS = 30000;
  var BACKOFF_MIN_MS = 100;
  var OPEN_TIMEOUT_MS = 10000; // a WebSocket that has not opened by then has failed
  var WS_FAILURES_BEFORE_POLL = 3;
  var WS_RETRY_WHILE_POLLING_MS = 30000;
  var POLL_WAIT_S = 25;
  var MAX_CHARS = 10000;

  // ------------------------------------------------------------------ small helpers -----
  function now() {
    return Date.now();
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    var out = "c";
    for (var i = 0; i < bytes.length; i++) out += (bytes[i] + 256).toString(16).slice(1);
    return out;
  }

  /** Full jitter: a random delay in [0, min(cap, base * 2^attempt)]. */
  function backoff(attempt) {
    var ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, Math.min(attempt, 16)));
    return Math.max(BACKOFF_MIN_MS, Math.random() * ceiling);
  }

  var memoryStore = {};
  function load(key) {
    var raw;
    try {
      raw = window.localStorage.getItem(key);
    } catch (e) {
      raw = memoryStore[key];
    }
    if (raw == null) return null;
    try {
      return JSON.parse(raw);
    } catch (e) {
      return null;
    }
  }
  function save(key, value) {
    var raw = JSON.stringify(value);
    memoryStore[key] = raw;
    try {
      window.localStorage.setItem(key, raw);
    } catch (e) {
      /* storage full or blocked: the in-memory copy still works for this page */
    }
  }

  function ApiError(status, code, message, retryAfter) {
    this.status = status;
    this.code = code;
    this.message = message;
    this.retryAfter = retryAfter;
  }

  /** fetch + JSON with the bridge's error envelope; network failures reject with status 0. */
  function api(method, path, body, timeoutMs, signal) {
    var controller = new AbortController();
    var timer = setTimeout(function () {
      controller.abort();
    }, timeoutMs || 15000);
    if (signal) {
      if (signal.aborted) controller.abort();
      else signal.addEventListener("abort", function () { controller.abort(); });
    }
    var init = { method: method, headers: {}, signal: controller.signal, credentials: "omit" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(BRIDGE + path, init)
      .then(
        function (response) {
          return response.text().then(function (text) {
            var json = null;
            try {
              json = text ? JSON.parse(text) : null;
            } catch (e) {
              json = null;
            }
            if (response.ok) return json || {};
            var err = (json && json.error) || {};
            var retry = parseFloat(response.headers.get("Retry-After") || "");
            throw new ApiError(
              response.status,
              err.code || "http_" + response.status,
              err.message || response.statusText,
              isNaN(retry) ? null : retry
            );
          });
        },
        function () {
          throw new ApiError(0, "network", "network error", null);
        }
      )
      .finally(function () {
        clearTimeout(timer);
      });
  }

  function sleep(ms) {
    return new Promise(function (resolve) {
      setTimeout(resolve, ms);
    });
  }

  // ------------------------------------------------------------------ styles ------------
  var CSS = [
    ":host{all:initial;",
    "--_accent:var(--cb-accent,#4f46e5);--_accent-fg:var(--cb-accent-fg,#fff);",
    "--_bg:var(--cb-bg,#fff);--_fg:var(--cb-fg,#111827);--_muted:var(--cb-muted,#6b7280);",
    "--_border:var(--cb-border,#e5e7eb);--_agent-bg:var(--cb-agent-bg,#f3f4f6);",
    "--_agent-fg:var(--cb-agent-fg,#111827);--_user-bg:var(--cb-user-bg,var(--_accent));",
    "--_user-fg:var(--cb-user-fg,var(--_accent-fg));--_radius:var(--cb-radius,16px);",
    "--_font:var(--cb-font,system-ui,-apple-system,'Segoe UI',Roboto,sans-serif);",
    "--_z:var(--cb-z-index,2147483000);--_shadow:0 12px 40px rgba(0,0,0,.18);",
    "--_offset:var(--cb-offset,20px)}",
    "@media (prefers-color-scheme:dark){:host{",
    "--_bg:var(--cb-bg-dark,#111827);--_fg:var(--cb-fg-dark,#f9fafb);",
    "--_muted:var(--cb-muted-dark,#9ca3af);--_border:var(--cb-border-dark,#374151);",
    "--_agent-bg:var(--cb-agent-bg-dark,#1f2937);--_agent-fg:var(--cb-agent-fg-dark,#f9fafb);",
    "--_accent:var(--cb-accent-dark,var(--cb-accent,#818cf8));",
    "--_accent-fg:var(--cb-accent-fg-dark,#111827);--_shadow:0 12px 40px rgba(0,0,0,.5)}}",
    "*,*::before,*::after{box-sizing:border-box}",
    "[hidden]{display:none!important}",
    ".root{font-family:var(--_font);font-size:15px;line-height:1.4;color:var(--_fg)}",
    ".launcher{position:fixed;bottom:var(--_offset);z-index:var(--_z);width:56px;height:56px;",
    "border:0;border-radius:50%;background:var(--_accent);color:var(--_accent-fg);",
    "box-shadow:var(--_shadow);cursor:pointer;display:grid;place-items:center;",
    "transition:transform .15s ease}",
    ".launcher:hover{transform:scale(1.06)}",
    ".launcher:focus-visible,button:focus-visible,textarea:focus-visible{",
    "outline:3px solid var(--_accent);outline-offset:2px}",
    ".launcher svg{width:26px;height:26px}",
    ".right .launcher,.right .panel{right:var(--_offset)}",
    ".left .launcher,.left .panel{left:var(--_offset)}",
    ".badge{position:absolute;top:-2px;right:-2px;min-width:20px;height:20px;padding:0 6px;",
    "border-radius:10px;background:#dc2626;color:#fff;font-size:12px;font-weight:600;",
    "line-height:20px;text-align:center}",
    ".panel{position:fixed;bottom:calc(var(--_offset) + 68px);z-index:var(--_z);",
    "width:min(380px,calc(100vw - 2 * var(--_offset)));",
    "height:min(600px,calc(100vh - 120px));display:flex;flex-direction:column;",
    "background:var(--_bg);color:var(--_fg);border:1px solid var(--_border);",
    "border-radius:var(--_radius);box-shadow:var(--_shadow);overflow:hidden}",
    ".header{display:flex;align-items:center;gap:10px;padding:14px 14px 14px 18px;",
    "background:var(--_accent);color:var(--_accent-fg)}",
    ".heading{flex:1;min-width:0}",
    ".title{margin:0;font-size:16px;font-weight:650;line-height:1.2}",
    ".status{display:flex;align-items:center;gap:6px;font-size:12px;opacity:.9}",
    ".dot{width:8px;height:8px;border-radius:50%;background:#f59e0b}",
    ".status[data-state=online] .dot{background:#22c55e}",
    ".status[data-state=offline] .dot{background:#ef4444}",
    ".icon-btn{width:36px;height:36px;border:0;border-radius:10px;background:transparent;",
    "color:inherit;cursor:pointer;display:grid;place-items:center}",
    ".icon-btn:hover{background:rgba(255,255,255,.16)}",
    ".icon-btn svg{width:20px;height:20px}",
    ".scroll{flex:1;overflow-y:auto;padding:16px 14px 8px;scroll-behavior:smooth;",
    "overscroll-behavior:contain}",
    ".log{display:flex;flex-direction:column;gap:8px}",
    ".empty{margin:auto 0;color:var(--_muted);font-size:14px;text-align:center;padding:24px 8px}",
    ".msg{display:flex;flex-direction:column;max-width:82%}",
    ".msg--user{align-self:flex-end;align-items:flex-end}",
    ".msg--agent,.msg--human{align-self:flex-start;align-items:flex-start}",
    ".bubble{padding:9px 13px;border-radius:18px;white-space:pre-wrap;",
    "overflow-wrap:anywhere;word-break:break-word}",
    ".msg--user .bubble{background:var(--_user-bg);color:var(--_user-fg);",
    "border-bottom-right-radius:6px}",
    ".msg--agent .bubble,.msg--human .bubble{background:var(--_agent-bg);color:var(--_agent-fg);",
    "border-bottom-left-radius:6px}",
    ".who{font-size:11px;color:var(--_muted);margin:0 6px 2px}",
    ".meta{font-size:11px;color:var(--_muted);margin:2px 6px 0}",
    ".msg--pending .bubble{opacity:.7}",
    ".choices{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0 0}",
    ".choice{font:inherit;font-size:13px;padding:6px 12px;border-radius:16px;cursor:pointer;",
    "border:1px solid var(--_user-bg);background:transparent;color:var(--_user-bg)}",
    ".choice:hover,.choice:focus-visible{background:var(--_user-bg);color:var(--_user-fg)}",
    ".msg--failed .bubble{outline:1px solid #ef4444}",
    ".msg--failed .meta{color:#ef4444}",
    ".msg--streaming .bubble::after{content:'';display:inline-block;width:7px;height:1em;",
    "margin-left:2px;vertical-align:text-bottom;background:currentColor;opacity:.6;",
    "animation:cb-blink 1s steps(2) infinite}",
    ".system{align-self:center;max-width:90%;font-size:12px;color:var(--_muted);",
    "text-align:center;padding:2px 8px}",
    ".typing{display:flex;align-items:center;gap:4px;margin-top:8px;padding:10px 14px;",
    "width:max-content;border-radius:18px;background:var(--_agent-bg)}",
    ".typing span[aria-hidden]{width:7px;height:7px;border-radius:50%;background:var(--_muted);",
    "animation:cb-bounce 1.2s infinite ease-in-out}",
    ".typing span[aria-hidden]:nth-child(2){animation-delay:.15s}",
    ".typing span[aria-hidden]:nth-child(3){animation-delay:.3s}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);",
    "white-space:nowrap}",
    ".composer{display:flex;align-items:flex-end;gap:8px;padding:10px 12px 12px;",
    "border-top:1px solid var(--_border);background:var(--_bg)}",
    "textarea{flex:1;resize:none;min-height:40px;max-height:140px;padding:9px 12px;",
    "border:1px solid var(--_border);border-radius:12px;background:transparent;",
    "color:var(--_fg);font:inherit;line-height:1.4}",
    "textarea::placeholder{color:var(--_muted)}",
    ".send{width:40px;height:40px;flex:none;border:0;border-radius:12px;",
    "background:var(--_accent);color:var(--_accent-fg);cursor:pointer;display:grid;",
    "place-items:center}",
    ".send:disabled{opacity:.45;cursor:default}",
    ".send svg{width:18px;height:18px}",
    "@keyframes cb-bounce{0%,80%,100%{transform:translateY(0);opacity:.5}",
    "40%{transform:translateY(-4px);opacity:1}}",
    "@keyframes cb-blink{50%{opacity:0}}",
    "@media (prefers-reduced-motion:reduce){*{animation:none!important;transition:none!important;",
    "scroll-behavior:auto!important}}",
    "@media (max-width:480px){.panel{inset:0;width:100%;height:100%;",
    "max-height:100dvh;border-radius:0;border:0}",
    ".root.is-open .launcher{display:none}}",
  ].join("");

  var ICON_CHAT =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" ' +
    'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">' +
    '<path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z"/></svg>';
  var ICON_CLOSE =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2.2" ' +
    'stroke-linecap="round" aria-hidden="true" focusable="false">' +
    '<path d="M6 6l12 12M18 6L6 18"/></svg>';
  var ICON_SEND =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2.2" ' +
    'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">' +
    '<path d="M4 12l16-8-6 16-2.5-6.5z"/></svg>';

  // ------------------------------------------------------------------ DOM ---------------
  // Only constant markup is written with innerHTML; every piece of message or server text
  // goes through textContent.
  // a custom element name: the page's element rules (div {…}) do not reach the host
  var host = document.createElement("chatbridge-widget");
  host.id = "chatbridge-widget";
  host.setAttribute("data-chatbridge", "");
  var shadow = host.attachShadow({ mode: "open" });
  var style = document.createElement("style");
  style.textContent = CSS;
  shadow.appendChild(style);

  var root = document.createElement("div");
  root.className = "root " + POSITION;
  root.innerHTML =
    '<button class="launcher" type="button" aria-expanded="false" aria-controls="cb-panel" ' +
    'aria-label="Open chat">' + ICON_CHAT + '<span class="badge" hidden></span></button>' +
    '<section class="panel" id="cb-panel" role="dialog" aria-modal="false" ' +
    'aria-labelledby="cb-title" hidden>' +
    '<header class="header"><div class="heading"><h2 class="title" id="cb-title"></h2>' +
    '<div class="status" data-state="connecting"><span class="dot" aria-hidden="true"></span>' +
    '<span class="status-text">Connecting…</span></div></div>' +
    '<button class="icon-btn close" type="button" aria-label="Close chat">' + ICON_CLOSE +
    "</button></header>" +
    '<div class="scroll"><div class="empty">Send us a message and we will reply here.</div>' +
    '<div class="log" role="log" aria-live="polite" aria-relevant="additions text" ' +
    'aria-label="Messages"></div>' +
    '<div class="typing" hidden><span class="sr">The agent is typing…</span>' +
    '<span aria-hidden="true"></span><span aria-hidden="true"></span>' +
    '<span aria-hidden="true"></span></div></div>' +
    '<form class="composer" novalidate>' +
    '<textarea rows="1" aria-label="Message" placeholder="Type a message…" ' +
    'maxlength="' + MAX_CHARS + '" enterkeyhint="send"></textarea>' +
    '<button class="send" type="submit" aria-label="Send message" disabled>' + ICON_SEND +
    "</button></form></section>";
  shadow.appendChild(root);

  var el = {
    launcher: root.querySelector(".launcher"),
    badge: root.querySelector(".badge"),
    panel: root.querySelector(".panel"),
    title: root.querySelector(".title"),
    status: root.querySelector(".status"),
    statusText: root.querySelector(".status-text"),
    close: root.querySelector(".close"),
    scroll: root.querySelector(".scroll"),
    empty: root.querySelector(".empty"),
    log: root.querySelector(".log"),
    typing: root.querySelector(".typing"),
    form: root.querySelector(".composer"),
    input: root.querySelector("textarea"),
    send: root.querySelector(".send"),
  };
  el.title.textContent = TITLE;

  // ------------------------------------------------------------------ state -------------
  var stored = load(STORE_KEY) || {};
  var S = {
    sessionId: typeof stored.session_id === "string" ? stored.session_id : null,
    uid: stored.uid || null,
    conversationId: stored.conversation_id || null,
    cursor: stored.cursor || null,
    booted: false,
    booting: null,
    fatal: false,
    open: false,
    unread: 0,
    // live transport
    ws: null,
    wsOpen: false,
    wsAttempts: 0,
    wsFailedOpens: 0,
    wsTimer: null,
    lastFrameAt: 0,
    heartbeat: null,
    // long-poll transport
    polling: false,
    pollOk: false,
    pollAbort: null,
    pollTimer: null,
    pollNext: null,
    flushing: false,
    // the conversation on screen
    byId: {},
    byCmid: {},
    streams: {},
    doneTurns: {},
    typing: false,
  };
  var queue = (load(QUEUE_KEY) || []).filter(function (item) {
    return item && typeof item.client_message_id === "string" && typeof item.text === "string";
  });
  // longest option id the widget sends back as choice_id (the bridge takes 200 characters)
  var CHOICE_ID_MAX = 200;

  function persistSession() {
    save(STORE_KEY, {
      session_id: S.sessionId,
      uid: S.uid,
      conversation_id: S.conversationId,
      cursor: S.cursor,
    });
  }

  function persistQueue() {
    save(
      QUEUE_KEY,
      queue.map(function (item) {
        var kept = { client_message_id: item.client_message_id, text: item.text, at: item.at };
        if (item.choice_id) kept.choice_id = item.choice_id;
        return kept;
      })
    );
  }

  function transport() {
    if (S.wsOpen) return "ws";
    if (S.polling && S.pollOk) return "poll";
    return "offline";
  }

  // ------------------------------------------------------------------ rendering ---------
  function nearBottom() {
    var s = el.scroll;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToEnd(force) {
    if (force || nearBottom()) el.scroll.scrollTop = el.scroll.scrollHeight;
  }

  function timeOf(iso) {
    var d = iso ? new Date(iso) : new Date();
    if (isNaN(d.getTime())) d = new Date();
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function renderStatus() {
    var t = transport();
    var state = t === "offline" ? (S.booted || S.fatal ? "offline" : "connecting") : "online";
    var text;
    if (S.fatal) text = "Chat unavailable";
    else if (state === "online") text = "Online";
    else if (state === "connecting") text = "Connecting…";
    else text = queue.length ? "Offline – your messages will be sent" : "Reconnecting…";
    el.status.setAttribute("data-state", state);
    el.statusText.textContent = text;
  }

  function renderTyping() {
    var streaming = Object.keys(S.streams).length > 0;
    var show = S.typing && !streaming;
    var wasAtEnd = nearBottom();
    el.typing.hidden = !show;
    if (show && wasAtEnd) scrollToEnd(true);
  }

  function renderBadge() {
    el.badge.hidden = S.unread === 0 || S.open;
    el.badge.textContent = S.unread > 9 ? "9+" : String(S.unread);
    var label = S.open ? "Minimize chat" : "Open chat";
    if (S.unread && !S.open) label += " (" + S.unread + " unread)";
    el.launcher.setAttribute("aria-label", label);
  }

  /** A message row: role is user, agent, human or system. Text goes in with textContent. */
  function makeRow(role, text, meta) {
    var atEnd = nearBottom();
    var row = document.createElement("div");
    el.empty.hidden = true;
    if (role === "system") {
      row.className = "system";
      row.textContent = text;
      el.log.appendChild(row);
      scrollToEnd(atEnd);
      return { row: row, bubble: row, meta: null };
    }
    row.className = "msg msg--" + role;
    if (role === "human") {
      var who = document.createElement("div");
      who.className = "who";
      who.textContent = "Support team";
      row.appendChild(who);
    }
    var bubble = document.createElement("div");
    bubble.className = "bubble";
    bubble.textContent = text;
    var metaEl = document.createElement("div");
    metaEl.className = "meta";
    metaEl.textContent = meta || "";
    row.appendChild(bubble);
    row.appendChild(metaEl);
    el.log.appendChild(row);
    scrollToEnd(atEnd || role === "user");
    return { row: row, bubble: bubble, meta: metaEl };
  }

  function noteUnread(role) {
    if (role !== "user" && !S.open) {
      S.unread += 1;
      renderBadge();
    }
  }

  function setCursor(id) {
    if (id && id !== S.cursor) {
      S.cursor = id;
      persistSession();
    }
  }

  function addSystem(text) {
    if (text) makeRow("system", String(text));
  }

  /** Show a stored message once; binds it to a pending bubble or a stream of the same turn. */
  function addMessage(m, quiet) {
    if (!m || typeof m !== "object") return;
    var id = m.id ? String(m.id) : null;
    var role = ["user", "agent", "human", "system"].indexOf(m.role) >= 0 ? m.role : "agent";
    var text = typeof m.text === "string" ? m.text : String(m.text == null ? "" : m.text);
    if (id) setCursor(id);
    if (id && S.byId[id]) return;
    if (role === "user" && m.client_message_id && S.byCmid[m.client_message_id]) {
      var mine = S.byCmid[m.client_message_id];
      confirmed(mine, id, m.created_at);
      dequeue(m.client_message_id);
      return;
    }
    var view;
    if (role === "agent" || role === "human") {
      var stream = takeStream(m.turn_id, role, text);
      if (stream) {
        view = stream.view;
        view.row.classList.remove("msg--streaming");
        view.bubble.textContent = text;
        view.meta.textContent = timeOf(m.created_at);
      }
      S.typing = false;
    }
    if (!view) {
      view = makeRow(role, text, role === "system" ? null : timeOf(m.created_at));
      if (!quiet) noteUnread(role);
    }
    clearChoices(); // a newer message closes the choices offered before it
    if ((role === "agent" || role === "human") && m.interactive) showChoices(view, m.interactive);
    if (id) {
      view.row.setAttribute("data-id", id);
      S.byId[id] = view;
    }
    if (m.client_message_id) {
      view.row.setAttribute("data-cmid", m.client_message_id);
      S.byCmid[m.client_message_id] = view;
      if (role === "user") dequeue(m.client_message_id);
    }
    renderTyping();
  }

  /** The bot's choices as buttons under its message; a click sends the option's title as
   * the visitor's message, with the option's id (``choice_id``) for the bridge. */
  function showChoices(view, interactive) {
    var options = interactive && Array.isArray(interactive.options) ? interactive.options : [];
    options = options.filter(function (o) {
      return o && typeof o.id === "string" && typeof o.title === "string" && o.id.length <= CHOICE_ID_MAX;
    });
    if (!options.length) return;
    var box = document.createElement("div");
    box.className = "choices";
    box.setAttribute("role", "group");
    if (typeof interactive.title === "string") box.setAttribute("aria-label", interactive.title);
    options.forEach(function (o) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "choice";
      button.textContent = o.title;
      button.setAttribute("data-choice-id", o.id);
      if (typeof o.description === "string") button.title = o.description;
      button.addEventListener("click", function () {
        submit(o.title, o.id);
      });
      box.appendChild(button);
    });
    view.row.appendChild(box);
  }

  function clearChoices() {
    var boxes = el.log.querySelectorAll(".choices");
    for (var i = 0; i < boxes.length; i++) boxes[i].remove();
  }

  function confirmed(view, id, createdAt) {
    view.row.classList.remove("msg--pending", "msg--failed");
    view.meta.textContent = timeOf(createdAt);
    if (id) {
      view.row.setAttribute("data-id", id);
      S.byId[id] = view;
    }
  }

  /** The stream bubble a final message replaces: the same turn's; failing that (an agent
   * message without a matching turn id), an open stream whose text the message continues. */
  function takeStream(turnId, role, text) {
    var key = turnId != null ? String(turnId) : null;
    if (key) S.doneTurns[key] = true;
    if (!(key && S.streams[key]) && role === "agent") {
      key = Object.keys(S.streams).filter(function (k) {
        return text.indexOf(S.streams[k].chunks.join("")) === 0;
      })[0];
    }
    var stream = key ? S.streams[key] : null;
    if (stream) delete S.streams[key];
    return stream || null;
  }

  function onChunk(frame) {
    var key = String(frame.turn_id);
    if (S.doneTurns[key]) return; // a late chunk after the final message
    var stream = S.streams[key];
    if (!stream) {
      var view = makeRow("agent", "", "");
      view.row.classList.add("msg--streaming");
      view.row.setAttribute("data-turn", key);
      stream = S.streams[key] = { view: view, chunks: [] };
      noteUnread("agent");
    }
    var index = typeof frame.stream_index === "number" ? frame.stream_index : stream.chunks.length;
    stream.chunks[index] = typeof frame.content === "string" ? frame.content : "";
    var atEnd = nearBottom();
    stream.view.bubble.textContent = stream.chunks.join("");
    scrollToEnd(atEnd);
    renderTyping();
  }

  // ------------------------------------------------------------------ the outbox --------
  function pendingView(item) {
    var view = makeRow("user", item.text, "Sending…");
    view.row.classList.add("msg--pending");
    view.row.setAttribute("data-cmid", item.client_message_id);
    S.byCmid[item.client_message_id] = view;
    return view;
  }

  function dequeue(cmid) {
    var before = queue.length;
    queue = queue.filter(function (item) {
      return item.client_message_id !== cmid;
    });
    if (queue.length !== before) {
      // another tab may have changed the stored queue: drop just this id from it too
      var storedQueue = load(QUEUE_KEY) || [];
      var merged = queue.slice();
      storedQueue.forEach(function (item) {
        if (
          item && item.client_message_id !== cmid &&
          !merged.some(function (q) { return q.client_message_id === item.client_message_id; })
        ) {
          merged.push(item);
        }
      });
      queue = merged;
      persistQueue();
      renderStatus();
    }
  }

  function failed(cmid, reason) {
    var view = S.byCmid[cmid];
    dequeue(cmid);
    if (view) {
      view.row.classList.remove("msg--pending");
      view.row.classList.add("msg--failed");
      view.meta.textContent = "Not sent" + (reason ? " – " + reason : "");
    }
  }

  function onAck(cmid, messageId) {
    var view = S.byCmid[cmid];
    if (view) confirmed(view, messageId ? String(messageId) : null, null);
    dequeue(cmid);
  }

  /** The visitor sends ``text``: shown at once, queued (and persisted) until acknowledged. */
  function submit(text, choiceId) {
    if (!text || !text.trim()) return false;
    if (text.length > MAX_CHARS) {
      addSystem("That message is too long (at most " + MAX_CHARS + " characters).");
      return false;
    }
    var item = { client_message_id: randomId(), text: text, at: new Date().toISOString() };
    if (choiceId) item.choice_id = choiceId;
    clearChoices();
    queue.push(item);
    persistQueue();
    pendingView(item);
    renderStatus();
    start();
    flush();
    return true;
  }

  function flush() {
    if (!S.booted) return;
    if (S.wsOpen) flushWs();
    else if (S.polling) flushHttp();
  }

  function flushWs() {
    var ws = S.ws;
    queue.forEach(function (item) {
      if (item.sentOn === ws) return; // at most once per connection; the bridge dedupes retries
      var frame = {
        type: "user_message",
        client_message_id: item.client_message_id,
        content: item.text,
      };
      if (item.choice_id) frame.choice_id = item.choice_id;
      if (sendFrame(frame)) {
        item.sentOn = ws;
      }
    });
  }

  /** POST queued messages one by one, in order, while the connection is by polling. */
  function flushHttp() {
    if (S.flushing) return; // the running flush looks at the queue again when it is done
    var item = queue[0];
    if (!item || !S.polling || S.wsOpen) return;
    S.flushing = true;
    var sid = S.sessionId;
    var body = { text: item.text, client_message_id: item.client_message_id };
    if (item.choice_id) body.choice_id = item.choice_id;
    api("POST", "/api/webchat/sessions/" + encodeURIComponent(sid) + "/messages", body)
      .then(function (res) {
        if (res.session_id && res.session_id === S.sessionId && res.uid && res.uid !== S.uid) {
          // the session had expired: the bridge started a new one for this message
          S.uid = res.uid;
          S.conversationId = res.conversation_id || null;
          S.cursor = null;
          persistSession();
        }
        onAck(item.client_message_id, res.message_id);
        return true;
      })
      .catch(function (err) {
        if (err.status === 404) return renewSession().then(function () { return true; });
        if (err.status === 400 || err.status === 413 || err.status === 422) {
          failed(item.client_message_id, err.message);
          return true;
        }
        var wait = err.status === 429 && err.retryAfter ? err.retryAfter * 1000 : 2000;
        return sleep(wait).then(function () { return true; });
      })
      .catch(function () {
        return sleep(2000).then(function () { return true; });
      })
      .then(function () {
        S.flushing = false;
        if (queue.length) flushHttp();
      });
  }

  // ------------------------------------------------------------------ session -----------
  /** Create or resume the session. A new conversation forgets the old cursor. */
  function openSession() {
    // where the visitor is chatting from, without the query string (it may hold tokens)
    var page = (location.origin + location.pathname).slice(0, 500);
    var body = { inbox_id: INBOX, metadata: { page: page } };
    if (S.sessionId) body.session_id = S.sessionId;
    return api("POST", "/api/webchat/sessions", body).then(function (res) {
      var changed = res.created || res.uid !== S.uid || res.session_id !== S.sessionId;
      S.sessionId = res.session_id;
      if (changed) {
        S.cursor = null;
        S.streams = {};
      }
      S.uid = res.uid || S.uid;
      S.conversationId = res.conversation_id || S.conversationId;
      persistSession();
      return res;
    });
  }

  var renewing = null;
  /** The bridge no longer knows our session (4404/4410/404): make it again and go on. */
  function renewSession() {
    if (!renewing) {
      renewing = (function attempt(n) {
        return openSession().catch(function (err) {
          if (err.status === 404 && err.code === "unknown_inbox") throw err;
          return sleep(backoff(n)).then(function () {
            return attempt(n + 1);
          });
        });
      })(0)
        .catch(fatal)
        .finally(function () {
          renewing = null;
        });
    }
    return renewing;
  }

  function fatal(err) {
    S.fatal = true;
    addSystem("Chat is not available right now.");
    renderStatus();
    if (window.console) console.warn("chatbridge:", err && err.message);
  }

  /** Load the history after ``after`` page by page; returns the last cursor. */
  function loadHistory(after) {
    var path =
      "/api/webchat/sessions/" + encodeURIComponent(S.sessionId) + "/messages?limit=200" +
      (after ? "&after=" + encodeURIComponent(after) : "");
    return api("GET", path).then(function (res) {
      var messages = res.messages || [];
      messages.forEach(function (m) {
        addMessage(m, true);
      });
      if (res.cursor) setCursor(res.cursor);
      if (messages.length >= 200 && res.cursor && res.cursor !== after) {
        return loadHistory(res.cursor);
      }
      return res;
    });
  }

  /** Session, history, then the live connection. Retries until it works (or is refused). */
  function start() {
    if (S.booted || S.booting || S.fatal) return S.booting;
    S.booting = (function attempt(n) {
      return openSession()
        .then(function () {
          return loadHistory(null).catch(function (err) {
            if (err.status === 404) return renewSession();
            throw err;
          });
        })
        .then(function () {
          // messages still unsent from an earlier visit go after the history
          queue.forEach(function (item) {
            var view = S.byCmid[item.client_message_id];
            if (view) el.log.appendChild(view.row);
          });
          S.booted = true;
          renderStatus();
          scrollToEnd(true);
          connectWs();
        })
        .catch(function (err) {
          if (err && err.status === 404 && err.code === "unknown_inbox") throw err;
          renderStatus();
          return sleep(backoff(n)).then(function () {
            return attempt(n + 1);
          });
        });
    })(0)
      .catch(fatal)
      .finally(function () {
        S.booting = null;
      });
    return S.booting;
  }

  // ------------------------------------------------------------------ WebSocket ---------
  function sendFrame(frame) {
    if (!S.ws || !S.wsOpen) return false;
    try {
      S.ws.send(JSON.stringify(frame));
      return true;
    } catch (e) {
      return false;
    }
  }

  function connectWs() {
    clearTimeout(S.wsTimer);
    S.wsTimer = null;
    if (S.ws || S.fatal || !S.sessionId) return;
    var sock;
    try {
      sock = new WebSocket(WS_BASE + "/api/ws/chat/" + encodeURIComponent(S.sessionId));
    } catch (e) {
      S.wsFailedOpens += 1;
      afterWsLoss(1006);
      return;
    }
    S.ws = sock;
    var opened = false;
    var openTimer = setTimeout(function () {
      if (!opened) lose(1006);
    }, OPEN_TIMEOUT_MS);

    function lose(code) {
      clearTimeout(openTimer);
      if (S.ws !== sock) return;
      sock.onopen = sock.onmessage = sock.onclose = sock.onerror = null;
      try {
        sock.close();
      } catch (e) {
        /* already closing */
      }
      S.ws = null;
      S.wsOpen = false;
      stopHeartbeat();
      // a "typing off" sent while we were away would never arrive
      S.typing = false;
      renderTyping();
      if (!opened) S.wsFailedOpens += 1;
      afterWsLoss(code);
    }

    sock.onopen = function () {
      opened = true;
      clearTimeout(openTimer);
      S.wsOpen = true;
      S.wsAttempts = 0;
      S.wsFailedOpens = 0;
      S.lastFrameAt = now();
      stopPolling();
      sendFrame({ type: "resume", after: S.cursor || null });
      flushWs();
      startHeartbeat(lose);
      renderStatus();
    };
    sock.onmessage = function (event) {
      if (S.ws !== sock) return;
      S.lastFrameAt = now();
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (frame && typeof frame === "object") onFrame(frame);
    };
    sock.onerror = function () {
      /* onclose follows */
    };
    sock.onclose = function (event) {
      lose(event.code);
    };
  }

  function afterWsLoss(code) {
    renderStatus();
    if (S.fatal) return;
    if (code === 4404 || code === 4410) {
      renewSession().then(function () {
        S.wsAttempts = 0;
        if (!S.ws && !S.fatal) connectWs();
      });
      return;
    }
    if (!S.polling && S.wsFailedOpens >= WS_FAILURES_BEFORE_POLL) startPolling();
    var delay = S.polling
      ? WS_RETRY_WHILE_POLLING_MS * (0.5 + Math.random() / 2)
      : backoff(S.wsAttempts++);
    S.wsTimer = setTimeout(connectWs, delay);
  }

  function startHeartbeat(lose) {
    stopHeartbeat();
    S.heartbeat = setInterval(function () {
      if (now() - S.lastFrameAt > DEAD_MS) lose(1006);
      else sendFrame({ type: "ping" });
    }, PING_MS);
  }

  function stopHeartbeat() {
    clearInterval(S.heartbeat);
    S.heartbeat = null;
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "session":
        if (frame.session_id) S.sessionId = String(frame.session_id);
        if (frame.uid) S.uid = frame.uid;
        if (frame.conversation_id) S.conversationId = frame.conversation_id;
        persistSession();
        break;
      case "history":
        (frame.messages || []).forEach(function (m) {
          addMessage(m);
        });
        if (frame.cursor) setCursor(frame.cursor);
        break;
      case "message":
        addMessage(frame.message);
        break;
      case "ack":
        if (frame.client_message_id) onAck(frame.client_message_id, frame.message_id);
        break;
      case "agent_streaming":
        onChunk(frame);
        break;
      case "typing":
        S.typing = !!frame.on;
        renderTyping();
        break;
      case "system":
        addSystem(frame.text);
        break;
      case "error":
        onServerError(frame);
        break;
      case "ping":
        sendFrame({ type: "pong" });
        break;
      default:
        break;
    }
  }

  function onServerError(frame) {
    var cmid = frame.client_message_id;
    if (frame.code === "rate_limited") {
      // not stored: send the unacknowledged messages again a little later on this socket
      var ws = S.ws;
      var after = typeof frame.retry_after === "number" ? frame.retry_after * 1000 : 5000;
      setTimeout(function () {
        if (S.ws !== ws) return;
        queue.forEach(function (item) {
          item.sentOn = null;
        });
        flushWs();
      }, Math.min(Math.max(after, 1000), 60000));
      addSystem("You are sending messages too fast; retrying shortly.");
      return;
    }
    if (cmid && S.byCmid[cmid]) failed(cmid, frame.message);
    else if (frame.message) addSystem(frame.message);
  }

  // ------------------------------------------------------------------ long-polling ------
  function startPolling() {
    if (S.polling) return;
    S.polling = true;
    pollLoop();
  }

  function stopPolling() {
    if (!S.polling) return;
    S.polling = false;
    S.pollOk = false;
    if (S.pollAbort) S.pollAbort.abort();
  }

  function pollLoop() {
    var failures = 0;
    var first = true;
    (function next() {
      S.pollTimer = null;
      S.pollNext = next;
      if (!S.polling || S.fatal) return;
      flushHttp();
      var controller = new AbortController();
      S.pollAbort = controller;
      // the first request answers at once: it catches up and says whether polling works
      var wait = first || !S.pollOk ? 0 : POLL_WAIT_S;
      first = false;
      var path =
        "/api/webchat/sessions/" + encodeURIComponent(S.sessionId) + "/messages?wait=" +
        wait + (S.cursor ? "&after=" + encodeURIComponent(S.cursor) : "");
      api("GET", path, undefined, (POLL_WAIT_S + 15) * 1000, controller.signal)
        .then(function (res) {
          failures = 0;
          S.pollOk = true;
          (res.messages || []).forEach(function (m) {
            addMessage(m);
          });
          if (res.cursor) setCursor(res.cursor);
          S.typing = !!res.typing;
          renderTyping();
          renderStatus();
          return 0;
        })
        .catch(function (err) {
          if (!S.polling) return 0;
          if (err.status === 404) return renewSession().then(function () { return 0; });
          S.pollOk = false;
          renderStatus();
          if (err.status === 429 && err.retryAfter) return err.retryAfter * 1000;
          return backoff(failures++);
        })
        .then(function (delay) {
          if (delay) S.pollTimer = setTimeout(next, delay);
          else next();
        });
    })();
  }

  // ------------------------------------------------------------------ UI events ---------
  function openPanel() {
    if (S.open) return;
    S.open = true;
    S.unread = 0;
    el.panel.hidden = false;
    root.classList.add("is-open");
    el.launcher.setAttribute("aria-expanded", "true");
    renderBadge();
    renderStatus();
    scrollToEnd(true);
    el.input.focus();
    start();
  }

  function closePanel() {
    if (!S.open) return;
    var hadFocus = shadow.activeElement != null;
    S.open = false;
    el.panel.hidden = true;
    root.classList.remove("is-open");
    el.launcher.setAttribute("aria-expanded", "false");
    renderBadge();
    if (hadFocus) el.launcher.focus();
  }

  function autosize() {
    el.input.style.height = "auto";
    el.input.style.height = Math.min(el.input.scrollHeight + 2, 140) + "px";
    el.send.disabled = !el.input.value.trim();
  }

  el.launcher.addEventListener("click", function () {
    if (S.open) closePanel();
    else openPanel();
  });
  el.close.addEventListener("click", closePanel);
  root.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && S.open) {
      event.stopPropagation();
      closePanel();
    }
  });
  el.input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      el.form.requestSubmit ? el.form.requestSubmit() : sendFromInput();
    }
  });
  el.input.addEventListener("input", autosize);
  el.form.addEventListener("submit", function (event) {
    event.preventDefault();
    sendFromInput();
  });

  function sendFromInput() {
    if (submit(el.input.value)) {
      el.input.value = "";
      autosize();
    }
    el.input.focus();
  }

  // back online: try again now instead of when the backoff says
  window.addEventListener("online", function () {
    if (!S.booted || S.wsOpen || S.fatal) return;
    S.wsAttempts = 0;
    if (!S.ws) connectWs();
    if (S.polling && S.pollTimer) {
      clearTimeout(S.pollTimer);
      S.pollNext();
    }
  });

  // ------------------------------------------------------------------ start -------------
  function mount() {
    document.body.appendChild(host);
    // queued messages of an earlier visit are shown as pending and sent once connected
    queue.forEach(pendingView);
    renderBadge();
    renderStatus();
    // a returning visitor (or one with unsent messages) reconnects at once; a new one when
    // the panel is first opened, so a page view alone makes no session
    if (S.sessionId || queue.length) start();
  }

  window.Chatbridge = {
    version: "1",
    open: openPanel,
    close: closePanel,
    toggle: function () {
      if (S.open) closePanel();
      else openPanel();
    },
    send: submit,
    state: function () {
      var t = transport();
      return {
        connected: t !== "offline",
        transport: t,
        session_id: S.sessionId,
        uid: S.uid,
        conversation_id: S.conversationId,
        cursor: S.cursor,
        queued: queue.length,
        open: S.open,
        typing: S.typing,
        bridge: BRIDGE,
        inbox: INBOX,
      };
    },
  };

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
