/* Broadcasts in the console: a WhatsApp template sent to a segment of CRM people.
 *
 * Loaded before console.js, which calls window.chatbridgeBroadcasts({h, api, act, toast,
 * replace}) once and registers .page as the #/broadcasts page. The page lists the broadcasts
 * (newest first) with a live progress bar and the count of recipients in each state; it polls
 * with the console's tick. "New broadcast" opens a form: a template (GET /api/comms/templates),
 * its parameters (a value may name {person.first_name}, {person.name}, {person.company}, …),
 * the segment (tags, channel, last contact dates) and the rate; "Preview" asks the server how
 * many it reaches (POST /api/comms/broadcasts/preview) and "Create" starts it
 * (POST /api/comms/broadcasts). Pause, resume and cancel are one click. The server stays the
 * judge: its 422 (missing parameters, empty segment…) is shown under the form. Everything is
 * written as text, never HTML.
 */
(() => {
  "use strict";

  const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;
  const STATES = ["queued", "sending", "sent", "delivered", "read", "failed", "skipped", "uncertain"];
  const OPEN = ["queued", "running", "paused"];

  /** The parameter slots of a template, as the server keys them (templates.slot_keys). */
  function slotsOf(template) {
    const keys = [];
    const add = (k) => keys.includes(k) || keys.push(k);
    for (const c of template.components || []) {
      const type = String(c.type || "").toUpperCase();
      const names = [...String(c.text || "").matchAll(PLACEHOLDER)].map((m) => m[1]);
      if (type === "HEADER") {
        if (c.format && c.format !== "TEXT") add(`header.${String(c.format).toLowerCase()}`);
        names.forEach((n) => add(/^\d+$/.test(n) ? `header.${n}` : n));
      } else if (type === "BODY") {
        names.forEach(add);
      } else if (type === "BUTTONS") {
        (c.buttons || []).forEach((b, i) => {
          const t = String(b.type || "").toUpperCase();
          if ((t === "URL" && PLACEHOLDER.test(String(b.url || ""))) || t === "COPY_CODE") add(`button.${i}`);
          PLACEHOLDER.lastIndex = 0;
        });
      }
    }
    return keys;
  }

  const splitTags = (text) =>
    String(text || "")
      .split(/[,\n]/)
      .map((s) => s.trim())
      .filter(Boolean);

  /** "2026-01-31" → unix seconds at local midnight, or undefined. */
  const dateSeconds = (value) => (value ? new Date(`${value}T00:00:00`).getTime() / 1000 : undefined);

  window.chatbridgeBroadcasts = function chatbridgeBroadcasts({ h, api, act, toast, replace }) {
    function progressBar(b) {
      const pct = Math.round((b.progress || 0) * 100);
      return h(
        "div",
        { class: "bc-progress" },
        h("progress", { max: "100", value: String(pct), "aria-label": `${b.name}: ${pct}% settled` }),
        h("span", { class: "bc-progress-text" }, `${pct}%`),
      );
    }

    function counts(b) {
      return h(
        "ul",
        { class: "bc-counts" },
        STATES.filter((s) => b.counts[s]).map((s) => h("li", { class: `bc-count bc-${s}`, "data-state": s }, `${s} ${b.counts[s]}`)),
      );
    }

    function controls(b, refresh) {
      const button = (label, action, done) =>
        h(
          "button",
          {
            type: "button",
            class: "btn btn-ghost",
            onclick: (e) => act(e.currentTarget, async () => {
              await api("POST", `/api/comms/broadcasts/${encodeURIComponent(b.id)}/${action}`, {});
              await refresh(true);
            }, done),
          },
          label,
        );
      const out = [];
      if (b.state === "queued" || b.state === "running") out.push(button("Pause", "pause", "Paused"));
      if (b.state === "paused") out.push(button("Resume", "resume", "Resumed"));
      if (OPEN.includes(b.state)) out.push(button("Cancel", "cancel", "Cancelled"));
      // a send cut off by a crash that the provider could not settle: the operator checked
      if (b.counts.uncertain) out.push(button("Retry uncertain", "retry-uncertain", "Queued again"));
      return out;
    }

    function form(onCreated) {
      let templates = [];
      const templateSelect = h("select", { id: "bc-template", "aria-label": "Template" });
      const params = h("div", { class: "bc-params" });
      const name = h("input", { id: "bc-name", "aria-label": "Broadcast name", placeholder: "Spring restock" });
      const tagsAny = h("input", { id: "bc-tags-any", "aria-label": "Tags (any)", placeholder: "vip, beta" });
      const tagsAll = h("input", { id: "bc-tags-all", "aria-label": "Tags (all)", placeholder: "customer" });
      const channel = h("select", { id: "bc-channel", "aria-label": "Channel" }, ["", "whatsapp", "webchat", "chatwoot"].map((c) => h("option", { value: c }, c || "any channel")));
      const after = h("input", { id: "bc-after", type: "date", "aria-label": "Last contact after" });
      const before = h("input", { id: "bc-before", type: "date", "aria-label": "Last contact before" });
      const rate = h("input", { id: "bc-rate", type: "number", min: "0.01", step: "any", "aria-label": "Messages per second", placeholder: "default" });
      const result = h("p", { class: "bc-result muted", role: "status", id: "bc-result" });
      const problem = h("p", { class: "bc-problem", role: "alert", id: "bc-problem" });

      function chosen() {
        return templates.find((t) => t.id === templateSelect.value);
      }

      function showParams() {
        const t = chosen();
        replace(
          params,
          t
            ? slotsOf(t).map((slot) =>
                h("label", {}, `Parameter ${slot}`, h("input", { "data-slot": slot, "aria-label": `Parameter ${slot}`, value: slot === "1" ? "{person.first_name}" : "" })),
              )
            : [],
        );
      }
      templateSelect.addEventListener("change", showParams);

      function draft() {
        const segment = {};
        const any = splitTags(tagsAny.value);
        const all = splitTags(tagsAll.value);
        if (any.length) segment.tags_any = any;
        if (all.length) segment.tags_all = all;
        if (channel.value) segment.channel = channel.value;
        if (after.value) segment.last_contact_after = dateSeconds(after.value);
        if (before.value) segment.last_contact_before = dateSeconds(before.value);
        const parameters = {};
        for (const input of params.querySelectorAll("input[data-slot]")) parameters[input.dataset.slot] = input.value;
        return { template_id: templateSelect.value, parameters, segment };
      }

      async function send(button, path, body) {
        problem.textContent = "";
        try {
          return await api("POST", path, body);
        } catch (e) {
          problem.textContent = e.message || String(e);
          return undefined;
        }
      }

      const previewBtn = h("button", { type: "button", class: "btn", id: "bc-preview" }, "Preview");
      previewBtn.addEventListener("click", async () => {
        const out = await send(previewBtn, "/api/comms/broadcasts/preview", draft());
        if (!out) return;
        const reasons = Object.entries(out.skipped_reasons || {}).map(([r, n]) => `${n} ${r}`);
        result.textContent = `${out.sendable} will get it, ${out.skipped} skipped${reasons.length ? ` (${reasons.join(", ")})` : ""}`;
      });
      const createBtn = h("button", { type: "button", class: "btn btn-primary", id: "bc-create" }, "Create broadcast");
      createBtn.addEventListener("click", async () => {
        const body = { ...draft(), name: name.value.trim() || "Broadcast" };
        if (rate.value) body.rate_per_second = Number(rate.value);
        const out = await send(createBtn, "/api/comms/broadcasts", body);
        if (!out) return;
        toast(`Broadcast created: ${out.broadcast.total} recipients`);
        onCreated(out.broadcast);
      });

      const box = h(
        "section",
        { class: "bc-form card", "aria-label": "New broadcast" },
        h("h3", {}, "New broadcast"),
        h("label", {}, "Name", name),
        h("label", {}, "Template", templateSelect),
        params,
        h("fieldset", {}, h("legend", {}, "Who"), h("label", {}, "Has any tag", tagsAny), h("label", {}, "Has every tag", tagsAll), h("label", {}, "Talked on", channel), h("label", {}, "Last contact after", after), h("label", {}, "Last contact before", before)),
        h("label", {}, "Messages per second", rate),
        h("div", { class: "bc-actions" }, previewBtn, createBtn),
        result,
        problem,
      );

      (async () => {
        try {
          const data = await api("GET", "/api/comms/templates?limit=200");
          templates = data.templates || [];
        } catch (e) {
          problem.textContent = e.message || String(e);
        }
        replace(
          templateSelect,
          templates.map((t) => h("option", { value: t.id }, `${t.name} (${t.language})${t.status && t.status !== "approved" && t.status !== "local" ? ` · ${t.status}` : ""}`)),
        );
        showParams();
      })();
      return box;
    }

    /** The #/broadcasts page: {title, refresh}. */
    function page(view) {
      const list = h("div", { class: "bc-list", id: "broadcasts" });
      const formSlot = h("div");
      const newBtn = h("button", { type: "button", class: "btn btn-primary", id: "bc-new" }, "New broadcast");
      let sig = "";
      newBtn.addEventListener("click", () => {
        replace(formSlot, formSlot.firstChild ? [] : [form(() => { replace(formSlot); refresh(true); })]);
      });
      view.append(
        h(
          "div",
          { class: "page" },
          h("div", { class: "page-head" }, h("h2", {}, "Broadcasts"), h("span", { class: "muted" }, "a template to a segment of people, paced"), newBtn),
          formSlot,
          list,
        ),
      );

      async function refresh(force) {
        const data = await api("GET", "/api/comms/broadcasts?limit=50");
        const rows = data.broadcasts || [];
        const next = JSON.stringify(rows);
        if (next === sig && !force) return;
        sig = next;
        replace(
          list,
          rows.length
            ? rows.map((b) =>
                h(
                  "article",
                  { class: "bc-item card", "data-id": b.id, "data-state": b.state },
                  h("div", { class: "bc-head" }, h("strong", {}, b.name), h("span", { class: `pill bc-state-${b.state}` }, b.state), h("span", { class: "muted" }, `${b.total} recipients · ${b.rate_per_second}/s`), ...controls(b, refresh)),
                  progressBar(b),
                  counts(b),
                ),
              )
            : [h("p", { class: "muted" }, "No broadcasts yet.")],
        );
      }

      return { title: "Broadcasts", refresh: () => refresh(false) };
    }

    return { page, slotsOf };
  };
})();
