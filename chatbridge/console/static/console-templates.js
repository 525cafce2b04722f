/* Message templates in the console's composer (WhatsApp).
 *
 * Loaded before console.js, which calls window.chatbridgeTemplates({h, api, act, toast}) once
 * and then .attach({...}) for each open conversation, and .update(thread) on each refresh;
 * .describe(message) names the template of a message that has no text (an agent's reply);
 * .syncButton() is the settings page's "Sync templates from Meta".
 *
 * When a Meta thread's 24-hour customer service window is closed (thread.service_window.open
 * is false) the free-text composer is disabled and says why, and the template picker opens:
 * pick a template, its parameter fields come pre-filled from the contact and the linked CRM
 * person (GET …/templates/{id}/defaults), and "Send template" posts it
 * (POST /api/comms/threads/{id}/template). On WhatsApp threads whose window is open the
 * picker is one click away ("Template…"). The server stays the judge: a 422 naming missing
 * or unknown parameters is shown at those fields. Everything is written as text, never HTML.
 */
(() => {
  "use strict";

  const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;

  window.chatbridgeTemplates = function chatbridgeTemplates({ h, api, act, toast }) {
    /** The body text of a template with the values typed so far (a live preview). */
    function preview(template, values) {
      const parts = [];
      for (const c of template.components || []) {
        const type = String(c.type || "").toUpperCase();
        if (type === "HEADER" && c.text) parts.push(fill(c.text, values, true));
        else if (type === "HEADER" && c.format) parts.push(`[${String(c.format).toLowerCase()}]`);
        else if (type === "BODY" && c.text) parts.push(fill(c.text, values, false));
        else if (type === "FOOTER" && c.text) parts.push(c.text);
      }
      return parts.join("\n\n");
    }

    function fill(text, values, header) {
      return String(text).replace(PLACEHOLDER, (whole, name) => {
        const key = header && /^\d+$/.test(name) ? `header.${name}` : name;
        const v = values[key];
        return v ? v : whole;
      });
    }

    function slotLabel(slot) {
      if (slot.media) return `Header ${slot.key.split(".")[1]} URL`;
      if (slot.component === "button") return `Button ${Number(slot.key.split(".")[1]) + 1} value`;
      if (slot.key.startsWith("header.")) return `Header {{${slot.key.slice(7)}}}`;
      return `{{${slot.key}}}`;
    }

    function attach({ base, composer, input, sendBtn, refresh }) {
      let thread = null;
      let templates = null; // loaded once per conversation, when first needed
      let chosen = null;
      let openedByUser = false;
      const fields = new Map(); // slot key → input
      const banner = h("div", { class: "window-closed", id: "window-closed", role: "status", hidden: true });
      const toggle = h("button", { type: "button", class: "btn btn-ghost", id: "template-toggle", hidden: true }, "Template…");
      const select = h("select", { id: "template-select", "aria-label": "Template" });
      const form = h("div", { class: "template-fields", id: "template-fields" });
      const shown = h("pre", { class: "template-preview", id: "template-preview", "aria-label": "Preview" });
      const error = h("div", { class: "field-error", id: "template-error", role: "alert" });
      const sendTpl = h("button", { type: "button", class: "btn btn-primary", id: "template-send" }, "Send template");
      const panel = h(
        "section",
        { class: "template-panel", id: "template-panel", "aria-label": "Send a template", hidden: true },
        h("label", { class: "small muted", for: "template-select" }, "Template"),
        select,
        form,
        shown,
        error,
        sendTpl,
      );
      composer.before(banner, panel);
      composer.append(toggle);

      toggle.addEventListener("click", () => {
        openedByUser = panel.hidden;
        show(openedByUser);
      });
      select.addEventListener("change", () => choose(select.value));
      sendTpl.addEventListener("click", () => send());

      async function load() {
        if (templates) return templates;
        const provider = String((thread && thread.channel_key) || "").split(":")[0];
        const params = provider === "meta_cloud" ? "?source=meta&status=approved" : "";
        const data = await api("GET", `/api/comms/templates${params}`);
        templates = (data && data.templates) || [];
        const options = templates.map((t) => h("option", { value: t.id }, `${t.name} · ${t.language}`));
        select.replaceChildren(h("option", { value: "" }, templates.length ? "Choose a template…" : "No templates: sync them in Settings"), ...options);
        return templates;
      }

      async function show(on) {
        panel.hidden = !on;
        if (on) await load().catch((e) => toast(e.message, true));
      }

      async function choose(id) {
        chosen = (templates || []).find((t) => t.id === id) || null;
        fields.clear();
        form.replaceChildren();
        error.textContent = "";
        if (!chosen) {
          shown.textContent = "";
          return;
        }
        let defaults = { parameters: {} };
        try {
          defaults = await api("GET", `${base}/templates/${encodeURIComponent(chosen.id)}/defaults`);
        } catch (e) {
          toast(e.message, true);
        }
        for (const slot of chosen.slots || []) {
          if (fields.has(slot.key)) continue;
          const field = h("input", {
            id: `slot-${slot.key.replace(/[^A-Za-z0-9_-]/g, "-")}`,
            "data-slot": slot.key,
            value: (defaults.parameters || {})[slot.key] || "",
            placeholder: slot.media ? "https://…" : "",
          });
          field.addEventListener("input", () => {
            field.removeAttribute("aria-invalid");
            error.textContent = "";
            shown.textContent = preview(chosen, values());
          });
          fields.set(slot.key, field);
          form.append(h("label", { class: "slot" }, h("span", { class: "small" }, slotLabel(slot)), field));
        }
        shown.textContent = preview(chosen, values());
      }

      function values() {
        const out = {};
        for (const [key, field] of fields) out[key] = field.value.trim();
        return out;
      }

      async function send() {
        if (!chosen) {
          error.textContent = "Choose a template first.";
          return;
        }
        const parameters = values();
        const missing = [...fields].filter(([, f]) => !f.value.trim()).map(([k]) => k);
        if (missing.length) {
          for (const k of missing) fields.get(k).setAttribute("aria-invalid", "true");
          error.textContent = `Fill in: ${missing.join(", ")}`;
          return;
        }
        error.textContent = "";
        sendTpl.disabled = true;
        try {
          await api("POST", `${base}/template`, { name: chosen.name, language: chosen.language, parameters });
          toast("Template sent.");
          select.value = "";
          await choose("");
          if (!isClosed()) show(false);
          await refresh();
        } catch (e) {
          const details = e.details || {};
          for (const k of details.missing || []) if (fields.has(k)) fields.get(k).setAttribute("aria-invalid", "true");
          error.textContent = e.message;
        } finally {
          sendTpl.disabled = false;
        }
      }

      function isClosed() {
        const w = thread && thread.service_window;
        return !!(w && w.applies && !w.open);
      }

      function update(t) {
        thread = t;
        const whatsapp = t.channel === "whatsapp";
        const closed = isClosed();
        toggle.hidden = !whatsapp || closed;
        input.disabled = closed;
        sendBtn.disabled = closed;
        banner.hidden = !closed;
        if (closed) {
          const w = t.service_window || {};
          const since = w.last_inbound_at ? `The customer last wrote ${new Date(w.last_inbound_at * 1000).toLocaleString()}.` : "The customer has not written yet.";
          banner.textContent = `The 24-hour window is closed. ${since} WhatsApp (Meta) accepts only an approved template now: pick one below.`;
          input.placeholder = "Free text is not possible outside the 24-hour window — send a template.";
          if (panel.hidden) show(true);
        } else {
          input.placeholder = "Write as a human operator…  (Enter sends, Shift+Enter new line)";
          if (!openedByUser && !panel.hidden) show(false);
        }
      }

      return { update };
    }

    /** A message that is a template without its text (an agent's reply): what was sent. */
    function describe(m) {
      const tpl = m && m.meta && m.meta.template;
      if (!tpl || !tpl.name) return "";
      const values = Object.entries(tpl.parameters || {}).map(([k, v]) => `${k}: ${v}`);
      return `Template “${tpl.name}”${tpl.language ? ` (${tpl.language})` : ""}${values.length ? ` — ${values.join(", ")}` : ""}`;
    }

    /** Settings page: read the WhatsApp Business Account's templates from Meta again. */
    function syncButton() {
      const button = h("button", { type: "button", class: "btn", id: "templates-sync" }, "Sync templates from Meta");
      button.addEventListener("click", () =>
        act(button, async () => {
          const out = await api("POST", "/api/comms/templates/sync", {});
          toast(`${out.fetched} templates at Meta: ${out.added} added, ${out.updated} updated, ${out.removed} removed.`);
        }),
      );
      return button;
    }

    return { attach, describe, syncButton };
  };
})();
