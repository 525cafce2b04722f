/* Route policies in the console: the editor's "Policies" section, the routes list's one-line
 * summary, and the placement of validation errors (ours and the server's) next to the field.
 *
 * Loaded before console.js, which calls window.chatbridgeRoutePolicies(h) with its DOM helper.
 * The fields, limits and defaults mirror chatbridge/policies/model.py (RoutePolicies); the
 * server stays the judge: what only it can check (an unknown time zone) comes back as a 422
 * whose details name the field, and is shown at that field like our own checks.
 */
(() => {
  "use strict";

  const DEFAULTS = Object.freeze({
    debounce_ms: 0,
    max_wait_ms: 10000,
    close_on_media: true,
    close_keywords: [],
    in_flight: "queue",
    handoff_keywords: [],
    resume_keywords: [],
    customer_can_resume: false,
    expire_after_seconds: null,
    expire_returns_to_bot: false,
    split_replies: false,
    ms_per_char: 30,
    max_typing_ms: 3000,
    business_hours: null,
    handoff_summary: false,
    summary_messages: 10,
    ignore: { contact_ids: [], phones: [], jids: [], group_patterns: [] },
    working_notice_after: null,
    working_notice_text: "Working on it…",
    notices_to_channel: false,
  });
  const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  const DAY_NAMES = { mon: "Monday", tue: "Tuesday", wed: "Wednesday", thu: "Thursday", fri: "Friday", sat: "Saturday", sun: "Sunday" };
  const IN_FLIGHT = [
    ["queue", "Queue", "answer each message in order, one turn after another (as without policies)"],
    ["merge_next", "Merge next", "hold new messages and send them together as the next turn"],
    ["supersede", "Supersede", "cancel the running turn, drop its reply, and answer everything in one new turn"],
  ];
  const OUTSIDE = {
    bot: "the bot answers as always",
    away_handoff: "send the away text and hand the conversation to a human",
    hold: "no answer: the message waits for a human",
  };
  const IGNORE = [
    ["contact_ids", "Contact ids", "the channel's contact ids", 1000],
    ["phones", "Phone numbers", "E.164, like +14155550123", 1000],
    ["jids", "WhatsApp JIDs", "like 14155550123@c.us", 1000],
    ["group_patterns", "Group patterns", "shell-style on the chat id, like *@g.us", 100],
  ];
  const RANGE = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$/;
  const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

  /** "a, b\nc" → ["a", "b", "c"]: lists are typed comma or newline separated. */
  function splitList(text) {
    return String(text || "")
      .split(/[,\n]/)
      .map((s) => s.trim())
      .filter(Boolean);
  }

  /** The same rule as model.parse_range: null when fine, else why not. */
  function rangeProblem(text) {
    const m = RANGE.exec(text);
    if (!m) return `"${text}" is not a time range like 09:00-17:30`;
    const start = Number(m[1]) * 60 + Number(m[2]);
    const end = Number(m[3]) * 60 + Number(m[4]);
    if (end > 24 * 60 || end <= start) return `"${text}": the range must end after it starts, by 24:00 at the latest`;
    return null;
  }

  function dateProblem(text) {
    const m = DATE.exec(text);
    if (!m) return `"${text}" is not a date like 2026-12-24`;
    const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
    if (d.getUTCFullYear() !== Number(m[1]) || d.getUTCMonth() !== Number(m[2]) - 1 || d.getUTCDate() !== Number(m[3]))
      return `"${text}" is not a calendar date`;
    return null;
  }

  function fmtMs(ms) {
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60000) return `${+(ms / 1000).toFixed(1)} s`;
    return `${+(ms / 60000).toFixed(1)} min`;
  }

  function fmtSeconds(s) {
    if (s < 60) return `${+s.toFixed(1)} s`;
    if (s < 3600) return `${+(s / 60).toFixed(1)} min`;
    if (s < 86400) return `${+(s / 3600).toFixed(1)} h`;
    return `${+(s / 86400).toFixed(1)} d`;
  }

  /** The full policies of a route: its stored ones over the defaults. */
  function withDefaults(p) {
    const out = { ...DEFAULTS, ...(p || {}) };
    out.ignore = { ...DEFAULTS.ignore, ...((p && p.ignore) || {}) };
    return out;
  }

  /** What a route does differently from the defaults, in a few words each. */
  function summarize(policies) {
    const p = withDefaults(policies);
    const d = DEFAULTS;
    const parts = [];
    const words = (list) => list.map((k) => `“${k}”`).join(", ");
    if (p.debounce_ms > 0) parts.push(`debounce ${fmtMs(p.debounce_ms)}`);
    if (p.max_wait_ms !== d.max_wait_ms) parts.push(`max wait ${fmtMs(p.max_wait_ms)}`);
    if (p.close_on_media !== d.close_on_media) parts.push("media keeps the window open");
    if (p.close_keywords.length) parts.push(`closes on ${words(p.close_keywords)}`);
    if (p.in_flight !== d.in_flight) parts.push(p.in_flight.replace("_", " "));
    if (p.handoff_keywords.length) parts.push(`handoff on ${words(p.handoff_keywords)}`);
    if (p.resume_keywords.length) parts.push(`resume on ${words(p.resume_keywords)}${p.customer_can_resume ? " (customer too)" : ""}`);
    else if (p.customer_can_resume) parts.push("customer can resume");
    if (p.expire_after_seconds != null) parts.push(`expires after ${fmtSeconds(p.expire_after_seconds)}${p.expire_returns_to_bot ? ", back to bot" : ""}`);
    else if (p.expire_returns_to_bot) parts.push("expiry returns to bot");
    if (p.split_replies) parts.push(`split replies ${p.ms_per_char} ms/char`);
    else if (p.ms_per_char !== d.ms_per_char) parts.push(`${p.ms_per_char} ms/char`);
    if (p.max_typing_ms !== d.max_typing_ms) parts.push(`typing ≤ ${fmtMs(p.max_typing_ms)}`);
    if (p.business_hours) {
      const bh = p.business_hours;
      parts.push(`hours ${bh.timezone}${bh.outside && bh.outside !== "bot" ? ` (outside: ${bh.outside.replace("_", " ")})` : ""}`);
    }
    if (p.handoff_summary) parts.push(`handoff summary (${p.summary_messages} messages)`);
    else if (p.summary_messages !== d.summary_messages) parts.push(`summary of ${p.summary_messages} messages`);
    if (p.working_notice_after != null) parts.push(`“${p.working_notice_text}” after ${fmtSeconds(p.working_notice_after)}`);
    if (p.notices_to_channel) parts.push("notices sent to the customer");
    const ignored = IGNORE.reduce((n, [k]) => n + (p.ignore[k] || []).length, 0);
    if (ignored) parts.push(`ignores ${ignored}`);
    return parts;
  }

  function localZone() {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    } catch (_) {
      return "UTC";
    }
  }

  function zones() {
    try {
      return Intl.supportedValuesOf("timeZone");
    } catch (_) {
      return [];
    }
  }

  window.chatbridgeRoutePolicies = (h) => {
    let uid = 0;

    /** A hint under a control: its description, not part of its name. */
    function hinted(control, hint) {
      if (!hint) return null;
      const el = h("span", { class: "hint", id: `pol-hint-${++uid}` }, hint);
      control.setAttribute("aria-describedby", el.id);
      return el;
    }

    /** A labelled control that errors can find by its API path (data-path). */
    function field(path, label, control, opts = {}) {
      control.id = control.id || `pol-${++uid}`;
      return h(
        "div",
        { class: `field ${opts.cls || ""}`, "data-path": path, "data-label": label, "data-blame": opts.blame || null },
        h("label", { for: control.id }, label),
        control,
        hinted(control, opts.hint),
      );
    }

    function check(path, label, control, hint) {
      return h("div", { class: "field check", "data-path": path, "data-label": label }, h("label", {}, control, label), hinted(control, hint));
    }

    function group(path, legend, ...kids) {
      return h("fieldset", { "data-path": path, "data-label": legend }, h("legend", {}, legend), h("div", { class: "form" }, kids));
    }

    const append = (el, ...kids) => (el.append(...kids), el);
    const num = (name, value, step) => h("input", { name, type: "number", step: step || "1", value: value ?? "", inputmode: "numeric" });
    const listBox = (name, values, placeholder) => h("textarea", { name, rows: 2, placeholder, value: (values || []).join(", ") });

    /** The "Policies" section of the route form for `policies` (a route's, or the defaults). */
    function editor(policies) {
      const p = withDefaults(policies);
      const bh = p.business_hours || { timezone: localZone(), weekly: {}, holidays: [], outside: "bot", away_text: null };
      const c = {
        debounce_ms: num("debounce_ms", p.debounce_ms),
        max_wait_ms: num("max_wait_ms", p.max_wait_ms),
        close_on_media: h("input", { type: "checkbox", name: "close_on_media", checked: p.close_on_media }),
        close_keywords: listBox("close_keywords", p.close_keywords, "done, that's all"),
        handoff_keywords: listBox("handoff_keywords", p.handoff_keywords, "human, agent"),
        resume_keywords: listBox("resume_keywords", p.resume_keywords, "bot"),
        customer_can_resume: h("input", { type: "checkbox", name: "customer_can_resume", checked: p.customer_can_resume }),
        expire_after_seconds: h("input", { name: "expire_after_seconds", type: "number", step: "any", value: p.expire_after_seconds ?? "", placeholder: "never" }),
        expire_returns_to_bot: h("input", { type: "checkbox", name: "expire_returns_to_bot", checked: p.expire_returns_to_bot }),
        split_replies: h("input", { type: "checkbox", name: "split_replies", checked: p.split_replies }),
        ms_per_char: num("ms_per_char", p.ms_per_char),
        max_typing_ms: num("max_typing_ms", p.max_typing_ms),
        hours_on: h("input", { type: "checkbox", name: "business_hours_on", checked: !!p.business_hours }),
        timezone: h("input", { name: "timezone", value: bh.timezone, list: "pol-zones", autocomplete: "off", spellcheck: "false" }),
        holidays: h("textarea", { name: "holidays", rows: 2, placeholder: "2026-12-24, 2026-12-25", value: (bh.holidays || []).join(", ") }),
        outside: h("select", { name: "outside" }, Object.keys(OUTSIDE).map((k) => h("option", { value: k }, k.replace("_", " ")))),
        away_text: h("textarea", { name: "away_text", rows: 2, placeholder: "We are closed; a colleague answers tomorrow from 9:00.", value: bh.away_text || "" }),
        handoff_summary: h("input", { type: "checkbox", name: "handoff_summary", checked: p.handoff_summary }),
        summary_messages: num("summary_messages", p.summary_messages),
        working_notice_after: h("input", { name: "working_notice_after", type: "number", step: "any", value: p.working_notice_after ?? "", placeholder: "never" }),
        working_notice_text: h("input", { name: "working_notice_text", value: p.working_notice_text, maxlength: "1000" }),
        notices_to_channel: h("input", { type: "checkbox", name: "notices_to_channel", checked: p.notices_to_channel }),
      };
      c.outside.value = bh.outside || "bot";
      const days = {};
      for (const day of WEEKDAYS)
        days[day] = h("input", { name: `weekly_${day}`, value: ((bh.weekly || {})[day] || []).join(", "), placeholder: "closed (e.g. 09:00-12:00, 13:00-17:30)" });
      const ignore = {};
      for (const [k, , hint] of IGNORE) ignore[k] = listBox(`ignore_${k}`, p.ignore[k], hint);
      const inFlight = IN_FLIGHT.map(([value, label, why]) => {
        const radio = h("input", { type: "radio", name: "in_flight", value, checked: p.in_flight === value });
        return h("div", { class: "choice" }, h("label", {}, radio, h("strong", {}, label)), hinted(radio, `— ${why}`));
      });
      const outsideHint = hinted(c.outside, " ");
      const showOutside = () => (outsideHint.textContent = OUTSIDE[c.outside.value] || "");
      c.outside.addEventListener("change", showOutside);
      showOutside();
      const copyWeekdays = h(
        "button",
        {
          type: "button",
          class: "btn btn-ghost",
          onclick: () => {
            for (const day of ["tue", "wed", "thu", "fri"]) days[day].value = days.mon.value;
            section.dispatchEvent(new Event("input", { bubbles: true }));
          },
        },
        "Copy Monday to Tue–Fri",
      );
      const zoneList = h("datalist", { id: "pol-zones" }, zones().map((z) => h("option", { value: z })));
      const hoursBody = h(
        "div",
        { class: "form hours" },
        field("policies.business_hours.timezone", "Time zone", c.timezone, { hint: "an IANA name, like Europe/Berlin" }),
        append(field("policies.business_hours.outside", "Outside hours", c.outside), outsideHint),
        h(
          "fieldset",
          { class: "field wide", "data-path": "policies.business_hours.weekly", "data-label": "Weekly hours" },
          h("legend", {}, "Weekly hours (empty: closed all day)"),
          h("div", { class: "days" }, WEEKDAYS.map((day) => field(`policies.business_hours.weekly.${day}`, DAY_NAMES[day], days[day])), copyWeekdays),
        ),
        field("policies.business_hours.holidays", "Holidays (closed all day)", c.holidays, { cls: "wide", hint: "dates, comma or newline separated" }),
        field("policies.business_hours.away_text", "Away text", c.away_text, { cls: "wide", hint: "sent outside hours with “away handoff”", blame: "away_text" }),
        zoneList,
      );
      const showHours = () => (hoursBody.hidden = !c.hours_on.checked);
      c.hours_on.addEventListener("change", showHours);
      showHours();

      const summaryLine = h("span", { class: "muted policy-summary" });
      const section = h(
        "details",
        { class: "field wide policies", id: "route-policies", "data-path": "policies", "data-label": "Policies", open: summarize(policies).length ? true : null },
        h("summary", {}, h("strong", {}, "Policies"), " ", summaryLine),
        group(
          "policies.window",
          "Bursts (debounce)",
          field("policies.debounce_ms", "Debounce (ms)", c.debounce_ms, { hint: "messages closer together than this become one turn; 0: every message is its own turn" }),
          field("policies.max_wait_ms", "Max wait (ms)", c.max_wait_ms, { hint: "a burst is answered this long after its first message at the latest", blame: "max_wait_ms" }),
          check("policies.close_on_media", "Close on media", c.close_on_media, "an attachment ends the burst at once"),
          field("policies.close_keywords", "Close keywords", c.close_keywords, { hint: "a message with one of these ends the burst at once" }),
        ),
        h("fieldset", { "data-path": "policies.in_flight", "data-label": "While the agent answers" }, h("legend", {}, "While the agent answers"), h("div", { class: "choices" }, inFlight)),
        group(
          "policies.keywords",
          "Keywords",
          field("policies.handoff_keywords", "Handoff keywords", c.handoff_keywords, { hint: "hand the conversation to a human at once" }),
          field("policies.resume_keywords", "Resume keywords", c.resume_keywords, { hint: "give it back to the bot" }),
          check("policies.customer_can_resume", "Customer can resume", c.customer_can_resume, "an operator always can"),
        ),
        group(
          "policies.expiry",
          "Bot expiry",
          field("policies.expire_after_seconds", "Expire after (s)", c.expire_after_seconds, { hint: "silence after which the agent starts a fresh session; empty: never" }),
          check("policies.expire_returns_to_bot", "Expiry returns to bot", c.expire_returns_to_bot, "a conversation a human held goes back to the bot"),
        ),
        group(
          "policies.pacing",
          "Human-paced replies",
          check("policies.split_replies", "Split replies", c.split_replies, "one channel message per paragraph"),
          field("policies.ms_per_char", "Typing per character (ms)", c.ms_per_char),
          field("policies.max_typing_ms", "Max typing (ms)", c.max_typing_ms),
        ),
        h(
          "fieldset",
          { "data-path": "policies.business_hours", "data-label": "Business hours" },
          h("legend", {}, "Business hours"),
          check("policies.business_hours_on", "Business hours", c.hours_on, "off: always open"),
          hoursBody,
        ),
        group(
          "policies.summary",
          "Handoff summary",
          check("policies.handoff_summary", "Handoff summary", c.handoff_summary, "on handoff, a private note for the human: the agent's summary or the last messages"),
          field("policies.summary_messages", "Summary messages", c.summary_messages, { hint: "how many of the last messages, without the agent's summary" }),
        ),
        group(
          "policies.live",
          "Slow agents and notices",
          field("policies.working_notice_after", "Working notice after (s)", c.working_notice_after, {
            hint: "a turn still running this long sends one notice (not on the web chat, which shows the agent's live status); empty: never",
          }),
          field("policies.working_notice_text", "Working notice text", c.working_notice_text),
          check("policies.notices_to_channel", "Send notices to the customer", c.notices_to_channel, "the agent’s system and warning notices go out on this channel too; the web chat and the console always show them"),
        ),
        h(
          "fieldset",
          { "data-path": "policies.ignore", "data-label": "Ignore list" },
          h("legend", {}, "Ignore list (stored, never sent to the agent)"),
          h("div", { class: "form" }, IGNORE.map(([k, label]) => field(`policies.ignore.${k}`, label, ignore[k], { hint: "comma or newline separated" }))),
        ),
      );

      const errors = [];
      const intIn = (path, el, lo, hi) => {
        const raw = el.value.trim();
        const n = Number(raw);
        if (raw === "" || !Number.isInteger(n)) errors.push({ path, msg: "a whole number is needed" });
        else if (n < lo || n > hi) errors.push({ path, msg: `must be between ${lo} and ${hi}` });
        return n;
      };
      const listIn = (path, el, max, each) => {
        const items = splitList(el.value);
        if (items.length > max) errors.push({ path, msg: `at most ${max} entries` });
        for (const item of items) {
          const problem = each && each(item);
          if (problem) {
            errors.push({ path, msg: problem });
            break;
          }
        }
        return items;
      };
      const keyword = (k) => (k.length > 100 ? `"${k.slice(0, 20)}…" is longer than 100 characters` : null);

      /** The policies as typed, and what is wrong with them: [{path, msg}]. */
      function read() {
        errors.length = 0;
        const v = {};
        v.debounce_ms = intIn("policies.debounce_ms", c.debounce_ms, 0, 60000);
        v.max_wait_ms = intIn("policies.max_wait_ms", c.max_wait_ms, 0, 600000);
        if (!errors.length && v.debounce_ms > 0 && v.max_wait_ms < v.debounce_ms)
          errors.push({ path: "policies.max_wait_ms", msg: "must be at least the debounce" });
        v.close_on_media = c.close_on_media.checked;
        v.close_keywords = listIn("policies.close_keywords", c.close_keywords, 50, keyword);
        v.in_flight = (section.querySelector("input[name=in_flight]:checked") || { value: "queue" }).value;
        v.handoff_keywords = listIn("policies.handoff_keywords", c.handoff_keywords, 50, keyword);
        v.resume_keywords = listIn("policies.resume_keywords", c.resume_keywords, 50, keyword);
        v.customer_can_resume = c.customer_can_resume.checked;
        const exp = c.expire_after_seconds.value.trim();
        v.expire_after_seconds = exp === "" ? null : Number(exp);
        if (exp !== "" && !(v.expire_after_seconds > 0 && v.expire_after_seconds <= 365 * 86400))
          errors.push({ path: "policies.expire_after_seconds", msg: "more than 0 and at most a year (31536000), or empty for never" });
        v.expire_returns_to_bot = c.expire_returns_to_bot.checked;
        v.split_replies = c.split_replies.checked;
        v.ms_per_char = intIn("policies.ms_per_char", c.ms_per_char, 0, 1000);
        v.max_typing_ms = intIn("policies.max_typing_ms", c.max_typing_ms, 0, 60000);
        v.business_hours = null;
        if (c.hours_on.checked) {
          const weekly = {};
          for (const day of WEEKDAYS) {
            const ranges = listIn(`policies.business_hours.weekly.${day}`, days[day], 12, rangeProblem);
            if (ranges.length) weekly[day] = ranges;
          }
          const tz = c.timezone.value.trim();
          if (!tz) errors.push({ path: "policies.business_hours.timezone", msg: "a time zone is needed, like Europe/Berlin" });
          else if (tz.length > 64) errors.push({ path: "policies.business_hours.timezone", msg: "at most 64 characters" });
          const away = c.away_text.value;
          if (c.outside.value === "away_handoff" && !away.trim())
            errors.push({ path: "policies.business_hours.away_text", msg: "an away text is needed when outside hours hands off" });
          else if (away.length > 4000) errors.push({ path: "policies.business_hours.away_text", msg: "at most 4000 characters" });
          v.business_hours = {
            timezone: tz,
            weekly,
            holidays: listIn("policies.business_hours.holidays", c.holidays, 400, dateProblem),
            outside: c.outside.value,
            away_text: away.trim() ? away : null,
          };
        }
        v.handoff_summary = c.handoff_summary.checked;
        v.summary_messages = intIn("policies.summary_messages", c.summary_messages, 1, 100);
        const wait = c.working_notice_after.value.trim();
        v.working_notice_after = wait === "" ? null : Number(wait);
        if (wait !== "" && !(v.working_notice_after > 0 && v.working_notice_after <= 3600))
          errors.push({ path: "policies.working_notice_after", msg: "more than 0 and at most an hour (3600), or empty for never" });
        v.working_notice_text = c.working_notice_text.value;
        if (!v.working_notice_text.trim()) errors.push({ path: "policies.working_notice_text", msg: "the working notice needs words" });
        else if (v.working_notice_text.length > 1000) errors.push({ path: "policies.working_notice_text", msg: "at most 1000 characters" });
        v.notices_to_channel = c.notices_to_channel.checked;
        v.ignore = {};
        for (const [k, , , max] of IGNORE) v.ignore[k] = listIn(`policies.ignore.${k}`, ignore[k], max);
        return { value: v, errors: errors.slice() };
      }

      const showSummary = () => {
        const parts = summarize(read().value);
        summaryLine.textContent = parts.length ? parts.join(" · ") : "defaults: each message its own turn, answered in order";
      };
      section.addEventListener("input", showSummary);
      section.addEventListener("change", showSummary);
      showSummary();
      return { element: section, read };
    }

    // ---------------------------------------------------------------- errors

    /** A refused request's errors as [{path, msg}]: our 422 names each field in its details. */
    function serverErrors(err) {
      const details = Array.isArray(err.details) ? err.details : [];
      const out = details
        .filter((d) => d && d.msg)
        .map((d) => ({
          path: (d.loc || []).filter((p) => p !== "body").join("."),
          msg: String(d.msg).replace(/^Value error, /, ""),
        }));
      return out.length ? out : [{ path: "", msg: String(err.message || err) }];
    }

    /** Which element an error belongs to: the field at its path (or the nearest group that
     * holds it); a group's own check (max_wait_ms vs debounce_ms) blames the field it names. */
    function target(form, path, msg) {
      const parts = path ? path.split(".") : [];
      while (parts.length) {
        const el = form.querySelector(`[data-path="${CSS.escape(parts.join("."))}"]`);
        parts.pop();
        if (!el) continue;
        if (!(el.tagName === "FIELDSET" || el.tagName === "DETAILS")) return el;
        const inner = [...el.querySelectorAll("[data-path]")];
        const blamed = inner.find((c) => c.dataset.blame && msg.includes(c.dataset.blame));
        if (blamed) return blamed;
        const quoted = /'([^']+)'|"([^"]+)"/.exec(msg);
        const q = quoted && (quoted[1] || quoted[2]);
        const holding = q && inner.find((c) => (c.querySelector(":scope > input, :scope > textarea") || {}).value?.includes(q));
        return holding || el;
      }
      return null;
    }

    /** A control no longer invalid: its error note leaves its description (its hint stays). */
    function unmark(control) {
      control.removeAttribute("aria-invalid");
      const ids = (control.getAttribute("aria-describedby") || "").split(" ").filter((id) => id && !id.startsWith("err-"));
      if (ids.length) control.setAttribute("aria-describedby", ids.join(" "));
      else control.removeAttribute("aria-describedby");
    }

    function clearErrors(form, box) {
      for (const e of form.querySelectorAll(".field-error")) e.remove();
      for (const e of form.querySelectorAll("[aria-invalid]")) unmark(e);
      for (const e of form.querySelectorAll(".invalid")) e.classList.remove("invalid");
      box.replaceChildren();
      box.hidden = true;
    }

    /** Show `errors` at their fields and, naming them, at the top of the form (`box`). */
    function placeErrors(form, box, errors, heading) {
      clearErrors(form, box);
      const lines = [];
      let first = null;
      for (const { path, msg } of errors) {
        const el = target(form, path, msg);
        const name = el ? el.dataset.label : path;
        lines.push(h("li", {}, name ? `${name}: ${msg}` : msg));
        if (!el) continue;
        const note = h("span", { class: "field-error", id: `err-${++uid}` }, msg);
        el.classList.add("invalid");
        const control = el.matches("fieldset, details") ? null : el.querySelector("input, select, textarea");
        if (control) {
          control.setAttribute("aria-invalid", "true");
          const described = control.getAttribute("aria-describedby");
          control.setAttribute("aria-describedby", described ? `${note.id} ${described}` : note.id);
          el.append(note);
        } else {
          const legend = el.querySelector(":scope > legend");
          if (legend) legend.after(note);
          else el.prepend(note);
        }
        for (let up = el.closest("details"); up; up = up.parentElement && up.parentElement.closest("details")) up.open = true;
        first = first || control || el;
      }
      box.append(h("strong", {}, heading || "Not saved."), h("ul", {}, lines));
      box.hidden = false;
      if (first && first.focus) first.focus();
    }

    return { DEFAULTS, summarize, editor, serverErrors, placeErrors, clearErrors, unmark };
  };
})();
