/* Protocol 1.3 in the console's conversation view: what the agent is doing right now, notices,
 * rich data and which agent answered.
 *
 * Loaded before console.js, which calls window.chatbridgeLive({h, api}) once and then:
 * - .statusLine(conversationId): an element under the messages and its refresh(); refresh
 *   reads GET /conversations/{id}/live (the bridge's in-memory status, never stored) and
 *   shows "agent1 is working: Searching your orders… 40%" with a bar, or hides itself;
 * - .notice(message): a system or warning notice (meta.notice) drawn apart from the agent's
 *   messages (grey or amber), saying whether it reached the customer; null for other messages;
 * - .agentName(message): the agent that answered (meta.agent_id), for the bubble's meta line;
 * - .data(message): a reply's rich data (meta.data) summed up in a line (the customer's
 *   channel got it drawn, or as text), null without any.
 * Everything is written as text, never HTML.
 */
(() => {
  "use strict";

  const NOTICE_LABEL = { system: "System notice", warning: "Warning" };

  window.chatbridgeLive = function chatbridgeLive({ h, api }) {
    function percent(p) {
      return typeof p === "number" && isFinite(p) ? Math.round(Math.min(1, Math.max(0, p)) * 100) : null;
    }

    function statusLine(conversationId) {
      const text = h("span", { class: "live-text" });
      const bar = h("span", { class: "live-bar", "aria-hidden": "true" }, h("span", { class: "live-fill" }));
      const pct = h("span", { class: "live-pct" });
      const el = h("div", { class: "live-status", id: "live-status", role: "status", hidden: true }, h("span", { class: "live-dot", "aria-hidden": "true" }), text, bar, pct);
      const path = `/conversations/${encodeURIComponent(conversationId)}/live`;

      function show(live) {
        if (!live) {
          el.hidden = true;
          el.removeAttribute("data-turn");
          return;
        }
        const who = live.agent_id || "The agent";
        text.textContent = live.content ? `${who} is working: ${live.content}` : `${who} is working…`;
        const p = percent(live.progress);
        bar.hidden = p === null;
        pct.textContent = p === null ? "" : `${p}%`;
        if (p !== null) bar.firstChild.style.width = `${p}%`;
        el.dataset.turn = live.turn_id || "";
        el.hidden = false;
      }

      async function refresh() {
        // the status is a nicety: a failed read hides it, it never breaks the view
        const data = await api("GET", path).catch(() => null);
        show(data && data.live);
      }

      return { element: el, refresh, show };
    }

    function notice(m) {
      const kind = m.meta && m.meta.notice;
      if (kind !== "system" && kind !== "warning") return null;
      const working = !!m.meta.working;
      const from = m.meta.agent_id ? `from ${m.meta.agent_id}` : "from the bridge";
      const reach = m.direction === "note" ? "not sent to the customer" : "sent to the customer";
      return h(
        "div",
        { class: `msg notice notice-${kind}`, "data-id": m.id, "data-notice": kind, "data-author": "system" },
        h("div", { class: "bubble" }, kind === "warning" ? h("span", { class: "notice-icon", "aria-hidden": "true" }, "⚠") : null, m.text || ""),
        h("div", { class: "meta" }, h("span", {}, working ? "Working notice" : NOTICE_LABEL[kind]), h("span", {}, working ? "from the bridge" : from), h("span", {}, reach)),
      );
    }

    function agentName(m) {
      const id = m.meta && m.meta.agent_id;
      return typeof id === "string" && id ? h("span", { class: "agent-name", title: "the agent that answered" }, id) : null;
    }

    function describe(data) {
      const list = (items, f) => (Array.isArray(items) ? items.map(f).filter(Boolean).join(" · ") : "");
      switch (data.kind) {
        case "cards":
          return `Cards: ${list(data.cards, (c) => c && c.title)}`;
        case "quick_replies":
          return `Quick replies: ${list(data.options, (o) => o && o.title)}`;
        case "table":
          return `Table: ${list(data.columns, String)} (${Array.isArray(data.rows) ? data.rows.length : 0} rows)`;
        case "chart":
          return `Chart (${data.chart || "?"})${data.title ? `: ${data.title}` : ""}`;
        default:
          return `Data: ${String(data.kind || "unknown")}`;
      }
    }

    function data(m) {
      const d = m.meta && m.meta.data;
      if (!d || typeof d !== "object" || Array.isArray(d)) return null;
      const words = typeof m.text === "string" && m.text.trim() !== "";
      // a reply of data alone: its summary is the bubble's only content, set apart all the same
      return h("div", { class: words ? "rich-data" : "rich-data alone", "data-kind": String(d.kind || "") }, describe(d));
    }

    return { statusLine, notice, agentName, data };
  };
})();
