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

  /** ``{agent?, role?}`` with only non-empty strings of at most 200 characters. */
  function addressOf(given) {
    var out = {};
    ["agent", "role"].forEach(function (k) {
      var v = given && given[k];
      if (typeof v === "string" && v.trim() && v.length <= 200) out[k] = v.trim();
    });
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
    "--_offset:var(--cb-offset,20px);--_warn-bg:var(--cb-warning-bg,#fef3c7);",
    "--_warn-fg:var(--cb-warning-fg,#92400e);--_warn-border:var(--cb-warning-border,#f59e0b)}",
    "@media (prefers-color-scheme:dark){:host{",
    "--_bg:var(--cb-bg-dark,#111827);--_fg:var(--cb-fg-dark,#f9fafb);",
    "--_muted:var(--cb-muted-dark,#9ca3af);--_border:var(--cb-border-dark,#374151);",
    "--_agent-bg:var(--cb-agent-bg-dark,#1f2937);--_agent-fg:var(--cb-agent-fg-dark,#f9fafb);",
    "--_accent:var(--cb-accent-dark,var(--cb-accent,#818cf8));",
    "--_accent-fg:var(--cb-accent-fg-dark,#111827);--_shadow:0 12px 40px rgba(0,0,0,.5);",
    "--_warn-bg:var(--cb-warning-bg-dark,#422006);--_warn-fg:var(--cb-warning-fg-dark,#fde68a);",
    "--_warn-border:var(--cb-warning-border-dark,#b45309)}}",
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
    ".scroll{flex:1;overflow-y:auto;padding:16px 14px 8px;",
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
    // notices: centred and muted (system) or amber (warning), never an agent bubble
    ".notice{align-self:center;max-width:90%;font-size:13px;text-align:center;",
    "padding:6px 12px;border-radius:10px;color:var(--_muted);",
    "border:1px dashed var(--_border);overflow-wrap:anywhere;white-space:pre-wrap}",
    ".notice--warning{color:var(--_warn-fg);background:var(--_warn-bg);",
    "border:1px solid var(--_warn-border)}",
    ".notice-icon{margin-right:4px}",
    // the agent's live status line and progress bar while it works
    ".live{display:flex;flex-direction:column;gap:6px;margin-top:8px;padding:9px 13px;",
    "max-width:82%;width:max-content;min-width:180px;border-radius:14px;",
    "background:var(--_agent-bg);color:var(--_muted);font-size:13px}",
    ".live-line{display:flex;align-items:center;gap:8px}",
    ".spinner{width:12px;height:12px;flex:none;border-radius:50%;border:2px solid var(--_border);",
    "border-top-color:var(--_accent);animation:cb-spin .9s linear infinite}",
    ".bar{height:6px;border-radius:3px;background:var(--_border);overflow:hidden}",
    ".bar-fill{display:block;height:100%;width:0;border-radius:3px;background:var(--_accent);",
    "transition:width .25s ease}",
    // files: the attach button, the tray of files about to be sent, files in messages
    ".attach{width:40px;height:40px;flex:none;border:1px solid var(--_border);border-radius:12px;",
    "background:transparent;color:var(--_muted);cursor:pointer;display:grid;place-items:center}",
    ".attach:hover{color:var(--_fg)}",
    ".attach svg{width:18px;height:18px}",
    ".file-input{display:none}",
    ".tray{display:flex;flex-direction:column;gap:6px;padding:8px 12px 0;",
    "border-top:1px solid var(--_border)}",
    ".tray:not([hidden])+.composer{border-top:0}",
    ".chip{display:flex;align-items:center;gap:8px;font-size:13px;padding:6px 8px 6px 10px;",
    "border:1px solid var(--_border);border-radius:10px}",
    ".chip-name{flex:1;min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}",
    ".chip-state{font-size:12px;color:var(--_muted)}",
    ".chip .bar{width:60px;flex:none}",
    ".chip--failed{border-color:#ef4444}",
    ".chip--failed .chip-state{color:#ef4444;white-space:normal}",
    ".chip-remove{border:0;background:transparent;color:var(--_muted);cursor:pointer;",
    "font:inherit;font-size:16px;line-height:1;padding:2px 4px;border-radius:6px}",
    ".files{display:flex;flex-direction:column;gap:6px;margin-top:4px}",
    ".msg--user .files{align-items:flex-end}",
    ".att-img{display:block;max-width:220px;max-height:220px;border-radius:12px;",
    "border:1px solid var(--_border);object-fit:cover}",
    ".att-file{display:inline-flex;align-items:center;gap:6px;padding:7px 11px;",
    "border-radius:12px;border:1px solid var(--_border);color:var(--_fg);",
    "text-decoration:none;font-size:13px;max-width:100%;overflow-wrap:anywhere}",
    "a.att-file:hover{border-color:var(--_accent)}",
    ".att-size{color:var(--_muted)}",
    ".file-status{display:flex;align-items:center;gap:6px;font-size:12px;color:var(--_muted);",
    "margin:2px 6px 0}",
    ".att-icon svg{width:14px;height:14px;display:block}",
    ".file-status[data-state=error]{color:#dc2626}",
    ".file-status[data-state=complete]{color:#15803d}",
    // rich data under an agent's message
    ".msg--rich{max-width:92%;width:92%}",
    ".rich{margin-top:6px;width:100%}",
    ".cards{display:flex;gap:8px;overflow-x:auto;padding-bottom:4px;",
    "scroll-snap-type:x mandatory}",
    ".card{flex:0 0 220px;scroll-snap-align:start;display:flex;flex-direction:column;",
    "border:1px solid var(--_border);border-radius:14px;overflow:hidden;background:var(--_bg)}",
    ".card-img{width:100%;height:120px;object-fit:cover;display:block;background:var(--_agent-bg)}",
    ".card-body{padding:10px 12px;display:flex;flex-direction:column;gap:3px}",
    ".card-title{font-weight:650;font-size:14px;color:var(--_fg);text-decoration:none}",
    "a.card-title:hover{text-decoration:underline}",
    ".card-subtitle{font-size:12px;color:var(--_muted)}",
    ".card-text{font-size:13px;white-space:pre-wrap}",
    ".card-buttons{display:flex;flex-direction:column;border-top:1px solid var(--_border);",
    "margin-top:auto}",
    ".card-button{font:inherit;font-size:13px;padding:8px;text-align:center;border:0;",
    "background:transparent;color:var(--_accent);cursor:pointer;text-decoration:none}",
    ".card-button+.card-button{border-top:1px solid var(--_border)}",
    ".card-button:hover{background:var(--_agent-bg)}",
    ".card-button:disabled{color:var(--_muted);cursor:default;background:transparent}",
    ".quick-replies{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px}",
    ".quick-reply:disabled{opacity:.5;cursor:default;background:transparent;",
    "color:var(--_user-bg)}",
    ".quick-reply[aria-pressed=true]{opacity:1;background:var(--_user-bg);color:var(--_user-fg)}",
    ".table-wrap{overflow-x:auto;border:1px solid var(--_border);border-radius:12px}",
    ".rich-table{border-collapse:collapse;font-size:13px;width:100%}",
    ".rich-table caption{caption-side:top;text-align:left;font-weight:600;padding:8px 10px 4px}",
    ".rich-table th,.rich-table td{padding:6px 10px;text-align:left;",
    "border-bottom:1px solid var(--_border);white-space:nowrap}",
    ".rich-table th{background:var(--_agent-bg);font-weight:600}",
    ".rich-table tr:last-child td{border-bottom:0}",
    ".rich-table td.num{text-align:right;font-variant-numeric:tabular-nums}",
    ".chart{border:1px solid var(--_border);border-radius:12px;padding:8px 10px;",
    "background:var(--_bg)}",
    ".chart-title{font-weight:600;font-size:13px;margin:0 0 4px}",
    ".chart svg{display:block;width:100%;height:auto}",
    ".chart text{fill:var(--_muted);font-size:10px;font-family:var(--_font)}",
    ".legend{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:12px;margin-top:4px}",
    ".legend span{display:inline-flex;align-items:center;gap:4px}",
    ".legend i{width:10px;height:10px;border-radius:2px;display:inline-block}",
    "@keyframes cb-spin{to{transform:rotate(360deg)}}",
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
  var ICON_ATTACH =
    '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" ' +
    'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">' +
    '<path d="M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6' +
    'a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9"/></svg>';
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
    '<span aria-hidden="true"></span></div>' +
    '<div class="live" role="status" aria-live="polite" hidden>' +
    '<div class="live-line"><span class="spinner" aria-hidden="true"></span>' +
    '<span class="live-text"></span></div>' +
    '<div class="bar" role="progressbar" aria-label="Progress" aria-valuemin="0" ' +
    'aria-valuemax="100" hidden><span class="bar-fill"></span></div></div></div>' +
    '<div class="tray" aria-label="Files to send" hidden></div>' +
    '<form class="composer" novalidate>' +
    '<button class="attach" type="button" aria-label="Attach a file">' + ICON_ATTACH +
    "</button>" +
    '<input class="file-input" type="file" multiple tabindex="-1" aria-hidden="true">' +
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
    live: root.querySelector(".live"),
    liveText: root.querySelector(".live-text"),
    liveBar: root.querySelector(".live .bar"),
    liveFill: root.querySelector(".live .bar-fill"),
    tray: root.querySelector(".tray"),
    attach: root.querySelector(".attach"),
    fileInput: root.querySelector(".file-input"),
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
    // the agent's live status line / progress bar: {turn, text, progress} or null
    live: null,
    liveTimer: null,
    // session lifecycle: the data the bridge keeps about this session, and the uid whose
    // end the visitor has been shown (once)
    sessionData: null,
    endedUid: null,
    // files: uploads in the tray, which message shows which file, and their status lines
    uploadsEnabled: true,
    uploadMaxBytes: null,
    uploads: [],
    // which of the route's agents the visitor addresses (data-agent / data-role, address())
    address: addressOf({ agent: data.agent, role: data.role }),
    fileRows: {},
    fileLines: {},
  };
  var queue = (load(QUEUE_KEY) || []).filter(function (item) {
    if (!item || typeof item.client_message_id !== "string" || typeof item.text !== "string") {
      return false;
    }
    if (item.files != null && !Array.isArray(item.files)) item.files = null;
    return true;
  });
  // a status line nobody updates or clears (its frames lost with a connection) goes away
  var LIVE_STALE_MS = 120000;
  var UPLOAD_MAX_FILES = 5;
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
        if (item.files && item.files.length) kept.files = item.files;
        if (item.agent) kept.agent = item.agent;
        if (item.role) kept.role = item.role;
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
    // the live status line says more than the dots: one or the other
    var show = S.typing && !streaming && !S.live;
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
  function makeRow(role, text, meta, notice, sender) {
    var atEnd = nearBottom();
    var row = document.createElement("div");
    el.empty.hidden = true;
    if (role === "system" && notice) {
      // a notice of the bridge or the agent: centred, muted (system) or amber (warning)
      row.className = "notice notice--" + notice;
      row.setAttribute("role", "note");
      row.setAttribute("data-notice", notice);
      if (notice === "warning") {
        var icon = document.createElement("span");
        icon.className = "notice-icon";
        icon.setAttribute("aria-hidden", "true");
        icon.textContent = "\u26a0";
        var label = document.createElement("span");
        label.className = "sr";
        label.textContent = "Warning: ";
        row.appendChild(icon);
        row.appendChild(label);
      }
      var body = document.createElement("span");
      body.className = "notice-text";
      body.textContent = text;
      row.appendChild(body);
      el.log.appendChild(row);
      scrollToEnd(atEnd);
      return { row: row, bubble: body, meta: null };
    }
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
      who.textContent = sender || "Support team"; // the operator's display name, when given
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
    if (m.author === "system") role = "system";
    var notice = m.notice === "warning" || m.notice === "system" ? m.notice : null;
    var text = typeof m.text === "string" ? m.text : String(m.text == null ? "" : m.text);
    var data = m.data && typeof m.data === "object" && !Array.isArray(m.data) ? m.data : null;
    var agentSide = role === "agent" || role === "human";
    var atEnd = nearBottom();
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
      clearLive(); // the reply is here: the agent's status line has done its work
    }
    if (!view) {
      if (role === "system" && !notice && m.notice != null) notice = "system";
      var sender = role === "human" && typeof m.sender_name === "string" ? m.sender_name : null;
      view = makeRow(role, text, role === "system" ? null : timeOf(m.created_at), notice, sender);
      if (!quiet) noteUnread(role);
    }
    clearChoices(); // a newer message closes the choices offered before it
    // ... and the quick replies (kept on screen, disabled); a notice is no answer to them
    if (role !== "system") closeReplies();
    if (agentSide && m.interactive) showChoices(view, m.interactive);
    if (role !== "system") {
      var files = (Array.isArray(m.attachments) ? m.attachments : []).map(attachmentOf);
      files = files.filter(Boolean);
      if (files.length && !view.files) drawFiles(view, files);
      if (agentSide && data && !view.rich) drawRich(view, data);
      if (!text.trim() && (view.files || view.rich)) view.bubble.hidden = true;
      scrollToEnd(atEnd); // with the files and data drawn: the whole message in view
    }
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

  // ------------------------------------------------------------------ live status -------
  /** A status_update / progress_update of the agent's turn: one line (and bar) on screen,
   * replaced by the next, gone with the reply (or a status_clear). */
  function onLive(frame) {
    var turn = frame.turn_id != null ? String(frame.turn_id) : null;
    if (turn && S.doneTurns[turn]) return; // late news of a turn already answered
    var same = S.live && S.live.turn === turn;
    var live = {
      turn: turn,
      text: same ? S.live.text : "",
      progress: same ? S.live.progress : null,
    };
    if (typeof frame.content === "string" && frame.content) live.text = frame.content;
    if (frame.type === "progress_update") {
      var p = Number(frame.progress);
      if (isFinite(p)) live.progress = Math.max(0, Math.min(1, p));
    }
    S.live = live;
    clearTimeout(S.liveTimer);
    S.liveTimer = setTimeout(function () {
      clearLive();
    }, LIVE_STALE_MS);
    renderLive();
  }

  /** Take the status line away (only if it is ``turn``'s, when a turn is named). */
  function clearLive(turn) {
    if (!S.live) return;
    if (turn != null && S.live.turn && S.live.turn !== String(turn)) return;
    S.live = null;
    clearTimeout(S.liveTimer);
    S.liveTimer = null;
    renderLive();
  }

  function renderLive() {
    var live = S.live;
    var atEnd = nearBottom();
    el.live.hidden = !live;
    if (live) {
      el.liveText.textContent = live.text || "Working on it…";
      var hasBar = typeof live.progress === "number";
      el.liveBar.hidden = !hasBar;
      if (hasBar) {
        var pct = Math.round(live.progress * 100);
        el.liveFill.style.width = pct + "%";
        el.liveBar.setAttribute("aria-valuenow", String(pct));
        el.liveBar.setAttribute("aria-valuetext", pct + "%");
      }
    }
    renderTyping();
    if (live && atEnd) scrollToEnd(true);
  }

  // ------------------------------------------------------------------ session frames ----
  function onSessionInfo(frame) {
    if (typeof frame.session_id === "string" && frame.session_id) S.sessionId = frame.session_id;
    if (typeof frame.uid === "string" && frame.uid) S.uid = frame.uid;
    if (typeof frame.conversation_id === "string" && frame.conversation_id) {
      S.conversationId = frame.conversation_id;
    }
    if (frame.data && typeof frame.data === "object") S.sessionData = frame.data;
    persistSession();
  }

  /** The bridge ended the session: say so; the next message starts a new one (the bridge
   * makes it for a message on an expired session, as after a 4410 close). */
  function onSessionExpired(frame) {
    if (typeof frame.session_id === "string" && S.sessionId && frame.session_id !== S.sessionId) {
      return; // another session's news
    }
    S.typing = false;
    clearLive();
    clearChoices();
    closeReplies();
    conversationEnded(typeof frame.reason === "string" ? frame.reason : null);
  }

  var ENDED_BECAUSE = {
    idle: "This conversation has ended after a while without messages.",
    ended: "This conversation has ended.",
  };

  /** The "conversation has ended" notice, once per conversation (uid). */
  function conversationEnded(reason) {
    if (S.endedUid != null && S.endedUid === S.uid) return;
    S.endedUid = S.uid;
    // nothing on screen has ended (a returning visitor's unsent messages are not a conversation)
    if (!el.log.querySelector(".msg:not(.msg--pending)")) return;
    var text = ENDED_BECAUSE[reason] || "This conversation has ended.";
    var view = makeRow("system", text + " Send a message to start a new one.", null, "system");
    view.row.classList.add("notice--ended");
    renderTyping();
  }

  // ------------------------------------------------------------------ files -------------
  /** An http(s) URL (relative ones are the bridge's), or null: never javascript:, data:… */
  function safeUrl(url) {
    if (typeof url !== "string" || !url) return null;
    var u;
    try {
      u = new URL(url, BRIDGE + "/");
    } catch (e) {
      return null;
    }
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  }

  function str(v) {
    return typeof v === "string" && v ? v : null;
  }

  /** A message view's attachment in one shape: {id, name, mime, size, url}. */
  function attachmentOf(a) {
    if (!a || typeof a !== "object") return null;
    var raw = str(a.url) || str(a.file_url) || str(a.data_url);
    var id = str(a.file_id) || str(a.id) || (raw && /^media:/.test(raw) ? raw.slice(6) : null);
    var url = safeUrl(raw);
    var name = str(a.name) || str(a.file_name) || str(a.filename);
    if (!name && url) name = lastSegment(url);
    return {
      id: id,
      name: name || "file",
      mime: str(a.mime) || str(a.mime_type) || str(a.content_type) || "",
      size: typeof a.size === "number" ? a.size : null,
      url: url,
      preview: null,
    };
  }

  /** A URL's last path segment, decoded when it can be (a name for a file without one). */
  function lastSegment(url) {
    var segment = new URL(url).pathname.split("/").pop() || "";
    try {
      return decodeURIComponent(segment);
    } catch (e) {
      return segment;
    }
  }

  function sizeText(bytes) {
    if (typeof bytes !== "number" || !(bytes >= 0)) return "";
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1024 * 1024) return Math.round(bytes / 102.4) / 10 + " KB";
    return Math.round(bytes / 104857.6) / 10 + " MB";
  }

  /** Images inline, other files as download links (a file without a usable URL: its name). */
  function drawFiles(view, files) {
    var box = document.createElement("div");
    box.className = "files";
    files.forEach(function (f) {
      var src = f.preview || f.url;
      var item;
      if (src && /^image\//i.test(f.mime)) {
        item = document.createElement(f.url ? "a" : "span");
        if (f.url) {
          item.href = f.url;
          item.target = "_blank";
          item.rel = "noopener noreferrer";
        }
        var img = document.createElement("img");
        img.className = "att-img";
        img.src = src;
        img.alt = f.name;
        img.loading = "lazy";
        item.appendChild(img);
      } else {
        item = document.createElement(f.url ? "a" : "span");
        item.className = "att-file";
        if (f.url) {
          item.href = f.url;
          item.target = "_blank";
          item.rel = "noopener noreferrer";
          item.setAttribute("download", f.name);
        }
        var icon = document.createElement("span");
        icon.className = "att-icon";
        icon.innerHTML = ICON_ATTACH; // constant markup
        var name = document.createElement("span");
        name.textContent = f.name;
        item.appendChild(icon);
        item.appendChild(name);
        var size = sizeText(f.size);
        if (size) {
          var sz = document.createElement("span");
          sz.className = "att-size";
          sz.textContent = size;
          item.appendChild(sz);
        }
      }
      item.setAttribute("data-file-id", f.id || "");
      box.appendChild(item);
      if (f.id) S.fileRows[f.id] = { view: view, name: f.name };
    });
    view.row.insertBefore(box, view.meta || null);
    view.files = box;
  }

  var FILE_LINES = {
    file_processing: { state: "processing", icon: null, text: "Working on " },
    file_complete: { state: "complete", icon: "\u2713", text: "Done with " },
    file_error: { state: "error", icon: "\u26a0", text: "Could not process " },
  };

  /** file_processing / file_complete / file_error: one small line under the file's message. */
  function onFileEvent(frame) {
    var id = str(frame.file_id);
    if (!id) return;
    var kind = FILE_LINES[frame.type];
    var known = S.fileRows[id];
    var name = known ? known.name : "your file";
    var text =
      (frame.type === "file_error" && (str(frame.error) || str(frame.content))) ||
      str(frame.content) ||
      kind.text + name + (frame.type === "file_processing" ? "…" : "");
    var atEnd = nearBottom();
    var line = S.fileLines[id];
    if (!line) {
      line = S.fileLines[id] = document.createElement("div");
      line.className = "file-status";
      line.setAttribute("data-file-id", id);
      line.setAttribute("role", "status");
      if (known) known.view.row.insertBefore(line, known.view.meta || null);
      else {
        line.classList.add("notice");
        el.log.appendChild(line);
      }
    }
    line.setAttribute("data-state", kind.state);
    line.textContent = "";
    var icon = document.createElement("span");
    icon.setAttribute("aria-hidden", "true");
    if (kind.icon) icon.textContent = kind.icon + " ";
    else icon.className = "spinner"; // still working
    var body = document.createElement("span");
    body.textContent = text;
    line.appendChild(icon);
    line.appendChild(body);
    scrollToEnd(atEnd);
  }

  function fileIds(item) {
    return item.files.map(function (f) {
      return f.file_id;
    });
  }

  function readyUploads() {
    return S.uploads.filter(function (u) {
      return u.state === "ready";
    });
  }

  /** Whether the bridge takes uploads here: a session answer may say (``uploads``). */
  function readUploads(res) {
    var u = res && res.uploads;
    if (typeof u === "boolean") S.uploadsEnabled = u;
    else if (u && typeof u === "object" && typeof u.enabled === "boolean") {
      S.uploadsEnabled = u.enabled;
    }
    if (u && typeof u === "object") {
      if (typeof u.max_bytes === "number" && u.max_bytes > 0) S.uploadMaxBytes = u.max_bytes;
      if (Array.isArray(u.types)) {
        // the file picker offers what the bridge takes; the bridge still checks every file
        el.fileInput.accept = u.types.filter(function (t) {
          return typeof t === "string";
        }).join(",");
      }
    }
    if (!S.uploadsEnabled) clearTray();
    renderComposer();
  }

  /** A file the visitor picked: a chip in the tray, uploaded at once with its progress. */
  function addUpload(file) {
    if (!S.uploadsEnabled) return;
    if (S.uploads.length >= UPLOAD_MAX_FILES) {
      addSystem("At most " + UPLOAD_MAX_FILES + " files in one message.");
      return;
    }
    var tooBig = S.uploadMaxBytes != null && file.size > S.uploadMaxBytes;
    var up = {
      name: file.name || "file",
      mime: file.type || "",
      size: file.size,
      state: "uploading",
      progress: 0,
      ref: null,
      error: null,
      xhr: null,
      preview: /^image\//.test(file.type || "") ? URL.createObjectURL(file) : null,
      chip: null,
    };
    S.uploads.push(up);
    drawChip(up);
    renderComposer();
    if (tooBig) {
      // no point sending it: the bridge would refuse it after the whole upload
      uploadFailed(up, "larger than the " + sizeText(S.uploadMaxBytes) + " a file may be");
      return;
    }
    Promise.resolve(start())
      .then(function () {
        if (up.state === "removed") return null; // taken away (or uploads are off here)
        if (!S.sessionId) throw new ApiError(0, "no_session", "the chat is not connected", null);
        return sendFile(up, file, true);
      })
      .catch(function (err) {
        uploadFailed(up, (err && err.message) || "upload failed");
      });
  }

  function uploadFailed(up, reason) {
    if (up.state === "removed") return;
    up.state = "failed";
    up.error = reason;
    drawChip(up);
    renderComposer();
  }

  /** POST the file (multipart: ``session_id`` and ``file``); XHR for its progress events. */
  function sendFile(up, file, mayRenew) {
    return new Promise(function (resolve) {
      var xhr = new XMLHttpRequest();
      up.xhr = xhr;
      xhr.open("POST", BRIDGE + "/api/webchat/upload");
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable && up.state === "uploading") {
          up.progress = e.total ? e.loaded / e.total : 0;
          drawChip(up);
        }
      };
      xhr.onload = function () {
        up.xhr = null;
        var json = null;
        try {
          json = xhr.responseText ? JSON.parse(xhr.responseText) : null;
        } catch (e) {
          json = null;
        }
        if (up.state === "removed") return resolve();
        if (xhr.status >= 200 && xhr.status < 300 && json && json.file_id) {
          up.state = "ready";
          up.progress = 1;
          up.ref = {
            file_id: String(json.file_id),
            file_name: str(json.file_name) || up.name,
            mime: str(json.mime) || up.mime,
            size: typeof json.size === "number" ? json.size : up.size,
          };
          drawChip(up);
          renderComposer();
          return resolve();
        }
        var err = (json && json.error) || {};
        if (xhr.status === 404 && err.code === "unknown_session" && mayRenew) {
          return resolve(
            renewSession().then(function () {
              return sendFile(up, file, false);
            })
          );
        }
        if (err.code === "uploads_disabled") {
          S.uploadsEnabled = false;
          renderComposer();
        }
        uploadFailed(up, err.message || "upload refused (" + xhr.status + ")");
        resolve();
      };
      xhr.onerror = function () {
        up.xhr = null;
        uploadFailed(up, "network error");
        resolve();
      };
      var form = new FormData();
      form.append("session_id", S.sessionId);
      form.append("file", file, up.name);
      xhr.send(form);
    });
  }

  function drawChip(up) {
    var chip = up.chip;
    if (!chip) {
      chip = up.chip = document.createElement("div");
      chip.className = "chip";
      var name = document.createElement("span");
      name.className = "chip-name";
      name.textContent = up.name;
      name.title = up.name;
      var state = document.createElement("span");
      state.className = "chip-state";
      state.setAttribute("role", "status");
      var bar = document.createElement("div");
      bar.className = "bar";
      bar.setAttribute("role", "progressbar");
      bar.setAttribute("aria-label", "Upload of " + up.name);
      var fill = document.createElement("span");
      fill.className = "bar-fill";
      bar.appendChild(fill);
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "chip-remove";
      remove.setAttribute("aria-label", "Remove " + up.name);
      remove.textContent = "\u00d7";
      remove.addEventListener("click", function () {
        removeUpload(up);
      });
      chip.appendChild(name);
      chip.appendChild(bar);
      chip.appendChild(state);
      chip.appendChild(remove);
      el.tray.appendChild(chip);
      el.tray.hidden = false;
    }
    chip.setAttribute("data-state", up.state);
    chip.classList.toggle("chip--failed", up.state === "failed");
    var pct = Math.round(up.progress * 100);
    var barEl = chip.querySelector(".bar");
    barEl.hidden = up.state !== "uploading";
    barEl.setAttribute("aria-valuenow", String(pct));
    chip.querySelector(".bar-fill").style.width = pct + "%";
    var stateText =
      up.state === "uploading" ? pct + "%" :
      up.state === "ready" ? sizeText(up.ref && up.ref.size) || "ready" :
      "Not attached – " + up.error;
    chip.querySelector(".chip-state").textContent = stateText;
  }

  function removeUpload(up) {
    if (up.xhr) up.xhr.abort();
    if (up.preview) URL.revokeObjectURL(up.preview);
    up.state = "removed";
    if (up.chip) up.chip.remove();
    S.uploads = S.uploads.filter(function (u) {
      return u !== up;
    });
    el.tray.hidden = S.uploads.length === 0;
    renderComposer();
    el.input.focus();
  }

  /** After sending: the tray starts empty (previews stay with the sent message). */
  function clearTray() {
    S.uploads.forEach(function (u) {
      if (u.xhr) u.xhr.abort();
      u.state = "removed";
    });
    S.uploads = [];
    el.tray.textContent = "";
    el.tray.hidden = true;
  }

  // ------------------------------------------------------------------ rich data ---------
  var PALETTE = ["#4f46e5", "#0891b2", "#f59e0b", "#db2777", "#16a34a", "#9333ea", "#ea580c"];
  var SVG_NS = "http://www.w3.org/2000/svg";

  function node(tag, className, text) {
    var n = document.createElement(tag);
    if (className) n.className = className;
    if (text != null) n.textContent = String(text);
    return n;
  }

  function svg(tag, attrs) {
    var n = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) {
      n.setAttribute(k, String(attrs[k]));
    });
    return n;
  }

  /** What to show for data the widget cannot draw: its own text, else compact JSON. */
  function richFallback(data) {
    var t = str(data.text) || str(data.title) || str(data.fallback);
    if (t) return t;
    try {
      return JSON.stringify(data).slice(0, 500);
    } catch (e) {
      return "";
    }
  }

  /** The agent's ``data`` under its message; unknown or malformed kinds stay text. */
  function drawRich(view, data) {
    var box = null;
    try {
      if (data.kind === "cards") box = drawCards(data);
      else if (data.kind === "quick_replies") box = drawQuickReplies(data);
      else if (data.kind === "table") box = drawTable(data);
      else if (data.kind === "chart") box = drawChart(data);
    } catch (e) {
      box = null;
    }
    if (!box) {
      if (!view.bubble.textContent) view.bubble.textContent = richFallback(data);
      return;
    }
    var wrap = node("div", "rich rich--" + data.kind);
    wrap.appendChild(box);
    view.row.classList.add("msg--rich");
    view.row.insertBefore(wrap, view.meta || null);
    view.rich = wrap;
  }

  /** A button that answers with ``text`` (quick replies, card buttons without a link). */
  function replyButton(className, title, text) {
    var b = node("button", className, title);
    b.type = "button";
    b.setAttribute("data-reply", "");
    b.addEventListener("click", function () {
      if (b.disabled) return;
      var group = b.closest(".rich");
      var all = group ? group.querySelectorAll("button[data-reply]") : [b];
      for (var i = 0; i < all.length; i++) all[i].disabled = true;
      b.setAttribute("aria-pressed", "true");
      submit(text);
    });
    return b;
  }

  /** Quick replies and card buttons of earlier messages: kept, no longer clickable. */
  function closeReplies() {
    var open = el.log.querySelectorAll("button[data-reply]:not(:disabled)");
    for (var i = 0; i < open.length; i++) open[i].disabled = true;
  }

  function drawCards(data) {
    var cards = Array.isArray(data.cards) ? data.cards.slice(0, 10) : [];
    cards = cards.filter(function (c) {
      return c && typeof c === "object" && str(c.title);
    });
    if (!cards.length) return null;
    var list = node("div", "cards");
    list.setAttribute("role", "list");
    cards.forEach(function (c) {
      var card = node("div", "card");
      card.setAttribute("role", "listitem");
      var image = safeUrl(c.image_url);
      if (image) {
        var img = node("img", "card-img");
        img.src = image;
        img.alt = "";
        img.loading = "lazy";
        card.appendChild(img);
      }
      var body = node("div", "card-body");
      var link = safeUrl(c.url);
      var title = node(link ? "a" : "div", "card-title", c.title);
      if (link) {
        title.href = link;
        title.target = "_blank";
        title.rel = "noopener noreferrer";
      }
      body.appendChild(title);
      if (str(c.subtitle)) body.appendChild(node("div", "card-subtitle", c.subtitle));
      if (str(c.text)) body.appendChild(node("div", "card-text", c.text));
      card.appendChild(body);
      var buttons = Array.isArray(c.buttons) ? c.buttons : [];
      var row = node("div", "card-buttons");
      buttons.slice(0, 5).forEach(function (b) {
        if (!b || !str(b.title)) return;
        var href = safeUrl(b.url);
        if (href) {
          var a = node("a", "card-button", b.title);
          a.href = href;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
          row.appendChild(a);
        } else if (!b.url) {
          row.appendChild(replyButton("card-button", b.title, str(b.value) || b.title));
        }
      });
      if (row.childNodes.length) card.appendChild(row);
      list.appendChild(card);
    });
    return list;
  }

  function drawQuickReplies(data) {
    var options = Array.isArray(data.options) ? data.options.slice(0, 10) : [];
    options = options.filter(function (o) {
      return o && str(o.title);
    });
    if (!options.length) return null;
    var box = node("div", "quick-replies");
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", "Quick replies");
    options.forEach(function (o) {
      box.appendChild(replyButton("choice quick-reply", o.title, str(o.value) || o.title));
    });
    return box;
  }

  function cellText(v) {
    if (v == null) return "";
    if (typeof v === "number") return v.toLocaleString();
    return typeof v === "object" ? JSON.stringify(v) : String(v);
  }

  function drawTable(data) {
    var columns = Array.isArray(data.columns) ? data.columns.slice(0, 20) : [];
    var rows = Array.isArray(data.rows) ? data.rows.slice(0, 200) : [];
    if (!columns.length) return null;
    var wrap = node("div", "table-wrap");
    var table = node("table", "rich-table");
    if (str(data.caption)) table.appendChild(node("caption", null, data.caption));
    var head = node("thead");
    var tr = node("tr");
    columns.forEach(function (c) {
      var th = node("th", null, cellText(c));
      th.scope = "col";
      tr.appendChild(th);
    });
    head.appendChild(tr);
    table.appendChild(head);
    var body = node("tbody");
    rows.forEach(function (r) {
      if (!Array.isArray(r)) return;
      var row = node("tr");
      columns.forEach(function (_, i) {
        var v = r[i];
        row.appendChild(node("td", typeof v === "number" ? "num" : null, cellText(v)));
      });
      body.appendChild(row);
    });
    table.appendChild(body);
    wrap.appendChild(table);
    return wrap;
  }

  function finite(v) {
    var n = Number(v);
    return typeof v === "number" && isFinite(n) ? n : 0;
  }

  /** bar / line / pie as inline SVG; every label and value in the legend and <title>s. */
  function drawChart(data) {
    var type = data.chart;
    if (type !== "bar" && type !== "line" && type !== "pie") return null;
    var labels = (Array.isArray(data.labels) ? data.labels : []).slice(0, 50).map(cellText);
    var series = (Array.isArray(data.series) ? data.series : []).slice(0, 8);
    series = series.filter(function (s) {
      return s && Array.isArray(s.values);
    });
    if (!labels.length || !series.length) return null;
    var box = node("figure", "chart chart--" + type);
    box.style.margin = "0";
    var title = str(data.title);
    if (title) box.appendChild(node("figcaption", "chart-title", title));
    var W = 300;
    var H = 170;
    var chart = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img" });
    chart.setAttribute("aria-label", (title ? title + ": " : "") + type + " chart");
    var legend = node("div", "legend");
    function key(name, color) {
      var item = node("span");
      var swatch = node("i");
      swatch.style.background = color;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(name));
      legend.appendChild(item);
    }
    function tip(shape, text) {
      var t = svg("title");
      t.textContent = text;
      shape.appendChild(t);
      return shape;
    }
    if (type === "pie") {
      var values = labels.map(function (_, i) {
        return Math.max(0, finite(series[0].values[i]));
      });
      var total = values.reduce(function (a, b) {
        return a + b;
      }, 0);
      var cx = W / 2;
      var cy = H / 2;
      var r = H / 2 - 8;
      var angle = -Math.PI / 2;
      values.forEach(function (v, i) {
        var color = PALETTE[i % PALETTE.length];
        key(labels[i] + " (" + cellText(v) + ")", color);
        if (!total || !v) return;
        var label = labels[i] + ": " + cellText(v);
        if (v === total) {
          chart.appendChild(tip(svg("circle", { cx: cx, cy: cy, r: r, fill: color }), label));
          return;
        }
        var next = angle + (v / total) * 2 * Math.PI;
        var d =
          "M" + cx + " " + cy +
          " L" + (cx + r * Math.cos(angle)).toFixed(2) + " " + (cy + r * Math.sin(angle)).toFixed(2) +
          " A" + r + " " + r + " 0 " + (next - angle > Math.PI ? 1 : 0) + " 1 " +
          (cx + r * Math.cos(next)).toFixed(2) + " " + (cy + r * Math.sin(next)).toFixed(2) + " Z";
        chart.appendChild(tip(svg("path", { d: d, fill: color, stroke: "#fff", "stroke-width": 1 }), label));
        angle = next;
      });
    } else {
      var all = [];
      series.forEach(function (s) {
        labels.forEach(function (_, i) {
          all.push(finite(s.values[i]));
        });
      });
      var max = Math.max.apply(null, all.concat([0]));
      var min = Math.min.apply(null, all.concat([0]));
      if (max === min) max = min + 1;
      var left = 34;
      var right = W - 6;
      var top = 8;
      var bottom = H - 22;
      var y = function (v) {
        return bottom - ((v - min) / (max - min)) * (bottom - top);
      };
      var slot = (right - left) / labels.length;
      chart.appendChild(svg("line", { x1: left, x2: right, y1: y(0), y2: y(0), stroke: "#9ca3af" }));
      [max, min !== 0 ? min : null].forEach(function (v) {
        if (v == null) return;
        var t = svg("text", { x: left - 4, y: y(v) + 3, "text-anchor": "end" });
        t.textContent = cellText(v);
        chart.appendChild(t);
      });
      labels.forEach(function (label, i) {
        var t = svg("text", { x: left + slot * (i + 0.5), y: H - 8, "text-anchor": "middle" });
        t.textContent = label.length > 10 ? label.slice(0, 9) + "…" : label;
        chart.appendChild(t);
      });
      series.forEach(function (s, si) {
        var color = PALETTE[si % PALETTE.length];
        var name = str(s.name) || "Series " + (si + 1);
        key(name, color);
        if (type === "bar") {
          var width = (slot * 0.8) / series.length;
          labels.forEach(function (label, i) {
            var v = finite(s.values[i]);
            var x = left + slot * i + slot * 0.1 + width * si;
            var y0 = y(Math.max(v, 0));
            var h = Math.abs(y(v) - y(0));
            var bar = svg("rect", { x: x.toFixed(2), y: y0.toFixed(2), width: width.toFixed(2),
              height: Math.max(h, 0.5).toFixed(2), fill: color, rx: 2 });
            chart.appendChild(tip(bar, name + ", " + label + ": " + cellText(v)));
          });
        } else {
          var points = labels.map(function (_, i) {
            return (left + slot * (i + 0.5)).toFixed(2) + "," + y(finite(s.values[i])).toFixed(2);
          });
          chart.appendChild(svg("polyline", { points: points.join(" "), fill: "none",
            stroke: color, "stroke-width": 2, "stroke-linejoin": "round" }));
          labels.forEach(function (label, i) {
            var v = finite(s.values[i]);
            var dot = svg("circle", { cx: (left + slot * (i + 0.5)).toFixed(2),
              cy: y(v).toFixed(2), r: 3, fill: color });
            chart.appendChild(tip(dot, name + ", " + label + ": " + cellText(v)));
          });
        }
      });
    }
    box.appendChild(chart);
    box.appendChild(legend);
    return box;
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
      clearLive(); // the reply is being written: no more status line
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
    if (item.files && item.files.length) {
      drawFiles(
        view,
        item.files.map(function (f) {
          return {
            id: f.file_id,
            name: f.file_name || "file",
            mime: f.mime || "",
            size: typeof f.size === "number" ? f.size : null,
            url: null,
            preview: (item.previews && item.previews[f.file_id]) || null,
          };
        })
      );
      if (!item.text.trim()) view.bubble.hidden = true;
    }
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

  /** The visitor sends ``text`` (and the uploaded ``files``, refs of the upload endpoint):
   * shown at once, queued (and persisted) until acknowledged. */
  function submit(text, choiceId, files) {
    text = typeof text === "string" ? text : "";
    files = files || [];
    if (!text.trim() && !files.length) return false;
    if (text.length > MAX_CHARS) {
      addSystem("That message is too long (at most " + MAX_CHARS + " characters).");
      return false;
    }
    var item = { client_message_id: randomId(), text: text, at: new Date().toISOString() };
    if (choiceId) item.choice_id = choiceId;
    if (S.address.agent) item.agent = S.address.agent;
    if (S.address.role) item.role = S.address.role;
    if (files.length) {
      item.files = files.map(function (u) {
        return u.ref;
      });
      item.previews = {};
      files.forEach(function (u) {
        if (u.preview) item.previews[u.ref.file_id] = u.preview;
      });
    }
    clearChoices();
    closeReplies();
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
      if (item.files && item.files.length) frame.files = fileIds(item);
      if (item.agent) frame.agent = item.agent;
      if (item.role) frame.role = item.role;
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
    if (item.files && item.files.length) body.files = fileIds(item);
    if (item.agent) body.agent = item.agent;
    if (item.role) body.role = item.role;
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
        // the conversation on screen has ended (expired while we were away): say so once
        if (S.uid && res.uid !== S.uid) conversationEnded(null);
        S.cursor = null;
        S.streams = {};
      }
      readUploads(res);
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
      // a "typing off" (or a status_clear) sent while we were away would never arrive
      S.typing = false;
      clearLive();
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
      case "status_update":
      case "progress_update":
        onLive(frame);
        break;
      case "status_clear":
        clearLive(frame.turn_id);
        break;
      case "session_created":
      case "session_updated":
        onSessionInfo(frame);
        break;
      case "session_expired":
        onSessionExpired(frame);
        break;
      case "file_processing":
      case "file_complete":
      case "file_error":
        onFileEvent(frame);
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
    renderComposer();
  }

  /** Send is possible with text or a ready file, and waits for uploads still running. */
  function renderComposer() {
    var uploading = S.uploads.some(function (u) {
      return u.state === "uploading";
    });
    el.send.disabled = uploading || (!el.input.value.trim() && !readyUploads().length);
    el.attach.hidden = !S.uploadsEnabled;
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
    if (S.uploads.some(function (u) { return u.state === "uploading"; })) return;
    var ready = readyUploads();
    if (submit(el.input.value, null, ready)) {
      el.input.value = "";
      clearTray();
      autosize();
    }
    el.input.focus();
  }

  el.attach.addEventListener("click", function () {
    el.fileInput.click();
  });
  el.fileInput.addEventListener("change", function () {
    var files = Array.prototype.slice.call(el.fileInput.files || []);
    el.fileInput.value = "";
    files.forEach(addUpload);
  });

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
    send: function (text) {
      return submit(text);
    },
    /** Address the next messages to one of the route's agents: {agent} or {role} ({} for
     * whoever has the conversation). */
    address: function (options) {
      S.address = addressOf(options || {});
      return { agent: S.address.agent || null, role: S.address.role || null };
    },
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
        live: S.live ? { turn_id: S.live.turn, text: S.live.text, progress: S.live.progress } : null,
        session_data: S.sessionData,
        ended: S.endedUid != null && S.endedUid === S.uid,
        uploads_enabled: S.uploadsEnabled,
        address: { agent: S.address.agent || null, role: S.address.role || null },
        bridge: BRIDGE,
        inbox: INBOX,
      };
    },
  };

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
