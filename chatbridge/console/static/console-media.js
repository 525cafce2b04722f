/* Media in the console's conversation view (WhatsApp images, voice notes, documents…).
 *
 * Loaded before console.js, which calls window.chatbridgeMedia({h, api}) once and then
 * .render(message) for each message bubble: it returns an element holding the message's
 * stored media (or null when it has none). A stored attachment names its file by media_id;
 * its row (GET /api/comms/media/{id}) gives a short-lived signed URL, relative to the bridge
 * (/media/{id}?exp=…&sig=…), which the <img>, <audio>, <video> or link loads without any
 * provider credential. Images are shown inline, audio and video get players, other files a
 * link; a voice note shows its transcript under the player. A file still downloading says
 * so, and one that failed says why. Everything is written as text, never HTML.
 */
(() => {
  "use strict";

  window.chatbridgeMedia = function chatbridgeMedia({ h, api }) {
    // media_id|status → the row's promise (a settled file's signed URL is reused for a while)
    const rows = new Map();
    const TTL_MS = 5 * 60 * 1000;

    function row(a) {
      const key = `${a.media_id}|${a.status || ""}`;
      const hit = rows.get(key);
      if (hit && Date.now() - hit.at < TTL_MS) return hit.promise;
      const promise = api("GET", `/api/comms/media/${encodeURIComponent(a.media_id)}`).catch(() => null);
      rows.set(key, { at: Date.now(), promise });
      return promise;
    }

    function label(a) {
      const size = a.size ? ` · ${Math.max(1, Math.round(a.size / 1024))} KB` : "";
      return `${a.name || a.kind || "file"}${size}`;
    }

    function player(kind, url, a) {
      if (kind === "image" || kind === "sticker") {
        return h("img", { class: "media-image", src: url, alt: a.name || kind, loading: "lazy" });
      }
      if (kind === "audio" || kind === "voice") return h("audio", { class: "media-audio", src: url, controls: "", preload: "metadata" });
      if (kind === "video") return h("video", { class: "media-video", src: url, controls: "", preload: "metadata" });
      return h("a", { class: "media-file", href: url, target: "_blank", rel: "noopener" }, `File: ${label(a)}`);
    }

    function transcript(a, info) {
      const status = (info && info.transcript_status) || a.transcript_status;
      const text = (info && info.transcript) || a.transcript;
      if (text) return h("div", { class: "media-transcript" }, h("span", { class: "muted" }, "Transcript: "), h("span", { class: "media-transcript-text" }, text));
      if (status === "skipped" || status === "failed") return h("div", { class: "media-transcript muted" }, "voice note (not transcribed)");
      return null;
    }

    function one(a) {
      const kind = a.kind || "document";
      const box = h("div", { class: `media media-${kind}`, "data-media-id": a.media_id, "data-status": a.status || "" });
      if (a.status === "failed") {
        box.append(h("div", { class: "media-failed" }, `${label(a)} could not be stored: ${a.error || "download failed"}`));
        return box;
      }
      if (a.status !== "ready") {
        box.append(h("div", { class: "media-pending muted" }, `${label(a)} — downloading…`));
        return box;
      }
      box.append(h("div", { class: "media-pending muted" }, label(a)));
      row(a).then((info) => {
        if (!info || !info.url) {
          box.replaceChildren(h("div", { class: "media-failed" }, `${label(a)} is not available`));
          return;
        }
        const parts = [player(kind, info.url, a)];
        if (kind === "voice") parts.push(transcript(a, info));
        if (kind !== "document") parts.push(h("a", { class: "media-open small muted", href: info.url, target: "_blank", rel: "noopener" }, `open ${label(a)}`));
        box.replaceChildren(...parts.filter(Boolean));
      });
      return box;
    }

    /** The message's stored media as one element, or null. */
    function render(m) {
      const list = (m.attachments || []).filter((a) => a && a.media_id);
      if (!list.length) return null;
      return h("div", { class: "media-list" }, ...list.map(one));
    }

    /** The text a media-only message shows in its bubble (a voice note's transcript is its text). */
    function describe(m) {
      const list = (m.attachments || []).filter((a) => a && a.media_id);
      if (!list.length) return "";
      return list.length === 1 ? `[${list[0].kind || "file"}]` : `[${list.length} files]`;
    }

    return { render, describe };
  };
})();
