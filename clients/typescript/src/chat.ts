// A front-end client for Chatbridge's web chat: what the widget does, for an app of your own.
// It opens (or resumes) a session over HTTP, then keeps the live WebSocket
// (`/api/ws/chat/{session_id}`): resume from the last message seen, heartbeat, reconnect with
// backoff and jitter, and an outgoing queue — a message sent while disconnected, or not yet
// acknowledged when the socket dropped, goes (again) on the next connection under its client
// message id, which the bridge stores once.
import { pause, reconnectDelay } from "./backoff.js";
import type {
  AckFrame,
  ChatClientFrame,
  ChatMessage,
  ChatServerFrame,
  ChatSession,
  UploadedFile,
} from "./chat-types.js";
import { type SocketFactory, type SocketLike, OPEN, frameText, globalSocket } from "./socket.js";

export type * from "./chat-types.js";

/** The frames one may subscribe to, by type, plus the client's own events. */
export type ChatEvents = {
  [F in ChatServerFrame as F["type"]]: F;
} & {
  /** The socket is open and the session resumed (`true`), or lost (`false`). */
  connection: { connected: boolean };
};

export interface ChatClientOptions {
  /** The bridge's base URL, `https://bridge.example`. */
  bridge: string;
  /** The web chat inbox (a route `{"channel": "webchat", "inbox_id": N}` says who answers). */
  inboxId: number;
  /** A session to resume (kept from an earlier visit); omitted: a new one. */
  sessionId?: string;
  /** What the page knows of the visitor (at most 20 keys). */
  metadata?: Record<string, string | number | boolean | null>;
  /** Opens WebSockets (default: the platform's `WebSocket`). */
  socket?: SocketFactory;
  fetch?: typeof fetch;
  /** Seconds between pings (default 20, as the bridge's heartbeat). */
  heartbeatSeconds?: number;
  reconnectInitialDelayMs?: number;
  reconnectMaxDelayMs?: number;
  /** After this many WebSocket opens in a row that fail (a proxy that blocks WebSockets),
   * long-poll the history over HTTP instead, trying the socket again now and then (default
   * 3, as the widget; 0: from the start). */
  socketFailuresBeforePolling?: number;
  /** Seconds each long-poll may be held (default 25). */
  pollWaitSeconds?: number;
  /** While long-polling, the socket is tried again after about this many seconds (default
   * 30, with jitter). */
  socketRetryWhilePollingSeconds?: number;
}

interface Pending {
  frame: Extract<ChatClientFrame, { type: "user_message" }>;
  /** Being POSTed (long-polling). */
  posting?: boolean;
  resolve: (ack: AckFrame) => void;
  reject: (error: Error) => void;
}

/** The bridge refused something the client sent (an `error` frame, or an HTTP 4xx). */
export class ChatError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`${code}: ${message}`);
    this.name = "ChatError";
    this.code = code;
  }
}

const DEAD_AFTER_INTERVALS = 3;
/** Close codes after which the session must be opened again (unknown, expired). */
const SESSION_GONE = new Set([4404, 4410]);

export class ChatClient {
  private readonly options: ChatClientOptions;
  private readonly base: string;
  private readonly listeners = new Map<string, Set<(frame: never) => void>>();
  private readonly pending = new Map<string, Pending>();
  private readonly stopper = new AbortController();
  private ws: SocketLike | null = null;
  private live = false;
  /** Aborts the long-poll loop, while one runs. */
  private polling: AbortController | null = null;
  private pollLive = false;
  private typingOn = false;
  private cursor: string | null = null;
  private sessionInfo: ChatSession | null = null;
  private running: Promise<void> | null = null;
  private counter = 0;
  /** Streamed pieces of replies in progress, by turn id. */
  private readonly streams = new Map<string, string[]>();

  constructor(options: ChatClientOptions) {
    this.options = options;
    this.base = options.bridge.replace(/\/+$/, "");
  }

  /** The session, once opened. */
  get session(): ChatSession | null {
    return this.sessionInfo;
  }

  /** Whether messages flow: over the socket, or by long-polling. */
  get connected(): boolean {
    return this.live || this.pollLive;
  }

  /** How messages flow now: `websocket`, `longpoll`, or null (reconnecting). */
  get transport(): "websocket" | "longpoll" | null {
    return this.live ? "websocket" : this.pollLive ? "longpoll" : null;
  }

  /** Subscribe to one frame type (or `connection`); returns the unsubscribe function. */
  on<K extends keyof ChatEvents>(type: K, listener: (frame: ChatEvents[K]) => void): () => void {
    let set = this.listeners.get(type);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(type, set);
    }
    set.add(listener as (frame: never) => void);
    return () => set.delete(listener as (frame: never) => void);
  }

  /** Resolves with the next frame of `type` that `match` accepts. */
  next<K extends keyof ChatEvents>(
    type: K,
    match: (frame: ChatEvents[K]) => boolean = () => true,
  ): Promise<ChatEvents[K]> {
    return new Promise((resolve) => {
      const off = this.on(type, (frame) => {
        if (match(frame)) {
          off();
          resolve(frame);
        }
      });
    });
  }

  /** The text streamed so far for an agent turn in progress. */
  streamedText(turnId: string): string {
    return (this.streams.get(turnId) ?? []).join("");
  }

  /** Open (or resume) the session and keep the live socket until `close()`. Resolves once
   * the first connection is up (a socket that fails meanwhile is retried with backoff); rejects
   * with `ChatError` when the bridge refuses the session (an inbox with no route). */
  async connect(): Promise<ChatSession> {
    const factory = this.options.socket ?? globalSocket();
    if (factory === undefined) {
      throw new ChatError("no_websocket", "no WebSocket here: pass options.socket");
    }
    const session = await this.openSession(this.options.sessionId);
    const up = this.next("connection", (e) => e.connected);
    this.running = this.keepConnected(factory);
    await up;
    return this.sessionInfo ?? session;
  }

  /** Send a message; it waits in the queue while the socket is down. Resolves with the
   * bridge's `ack` (rejects with `ChatError` when the bridge refuses it). */
  send(
    text: string,
    extra: { files?: string[]; clientMessageId?: string; agent?: string; role?: string } = {},
  ): Promise<AckFrame> {
    const clientMessageId = extra.clientMessageId ?? this.newClientMessageId();
    const frame: Pending["frame"] = {
      type: "user_message",
      client_message_id: clientMessageId,
      content: text,
      ...(extra.files ? { files: extra.files } : {}),
      ...(extra.agent ? { agent: extra.agent } : {}),
      ...(extra.role ? { role: extra.role } : {}),
    };
    return new Promise((resolve, reject) => {
      this.pending.set(clientMessageId, { frame, resolve, reject });
      if (this.live) this.write(frame);
      else if (this.pollLive) void this.postPending();
    });
  }

  /** Upload a file for the next message (`send(text, {files: [fileId]})`). Resolves with what
   * the bridge stored; rejects with `ChatError` naming its reason (too large, a type not
   * allowed, bytes that are not the declared type, uploads off). */
  async upload(file: Blob, name: string): Promise<UploadedFile> {
    const session = this.sessionInfo;
    if (session === null) throw new ChatError("not_connected", "connect() first");
    const form = new FormData();
    form.append("session_id", session.session_id);
    form.append("file", file, name);
    const http = this.options.fetch ?? fetch;
    const response = await http(`${this.base}/api/webchat/upload`, { method: "POST", body: form });
    const body = (await response.json()) as UploadedFile & {
      error?: { code: string; message: string };
    };
    if (!response.ok) {
      throw new ChatError(body.error?.code ?? String(response.status), body.error?.message ?? "");
    }
    return body;
  }

  /** How many messages wait for the bridge's acknowledgement. */
  get queued(): number {
    return this.pending.size;
  }

  /** Close the socket and stop reconnecting. Messages still queued are rejected. */
  async close(): Promise<void> {
    this.stopper.abort();
    this.polling?.abort();
    this.ws?.close(1000, "closed by the client");
    await this.running;
    for (const [id, item] of this.pending) {
      item.reject(new ChatError("closed", "the client was closed before the bridge acknowledged"));
      this.pending.delete(id);
    }
  }

  /** Drop the current socket (the client reconnects and resumes): a lost network. */
  disconnect(): void {
    this.ws?.close(4000, "client reconnecting");
  }

  private newClientMessageId(): string {
    this.counter += 1;
    const random = Math.random().toString(36).slice(2, 10);
    return `c${Date.now().toString(36)}${random}${this.counter}`;
  }

  private async openSession(sessionId: string | undefined): Promise<ChatSession> {
    const http = this.options.fetch ?? fetch;
    const response = await http(`${this.base}/api/webchat/sessions`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        inbox_id: this.options.inboxId,
        ...(sessionId ? { session_id: sessionId } : {}),
        metadata: this.options.metadata ?? {},
      }),
      signal: this.stopper.signal,
    });
    const body = (await response.json()) as ChatSession & {
      error?: { code: string; message: string };
    };
    if (!response.ok) {
      throw new ChatError(body.error?.code ?? String(response.status), body.error?.message ?? "");
    }
    if (this.sessionInfo?.uid !== body.uid) this.cursor = null; // another conversation
    this.sessionInfo = body;
    return body;
  }

  private async keepConnected(factory: SocketFactory): Promise<void> {
    const stop = this.stopper.signal;
    const initial = this.options.reconnectInitialDelayMs ?? 500;
    const max = this.options.reconnectMaxDelayMs ?? 30_000;
    const failuresBeforePolling = this.options.socketFailuresBeforePolling ?? 3;
    let attempt = 0;
    let failedOpens = 0;
    if (failuresBeforePolling <= 0) this.startPolling();
    while (!stop.aborted) {
      const { wasLive, code } = await this.connectOnce(factory);
      if (stop.aborted) break;
      if (wasLive) attempt = 0;
      failedOpens = wasLive ? 0 : failedOpens + 1;
      if (failedOpens >= failuresBeforePolling) this.startPolling();
      if (this.polling !== null && !SESSION_GONE.has(code)) {
        const retry = (this.options.socketRetryWhilePollingSeconds ?? 30) * 1000;
        await pause(retry * (0.5 + Math.random() / 2), stop);
        continue;
      }
      if (SESSION_GONE.has(code)) {
        try {
          await this.openSession(this.sessionInfo?.session_id);
          continue;
        } catch {
          // the bridge is unreachable: retry after the delay below
        }
      }
      await pause(reconnectDelay(attempt, initial, max), stop);
      attempt += 1;
    }
  }

  private connectOnce(factory: SocketFactory): Promise<{ wasLive: boolean; code: number }> {
    const session = this.sessionInfo;
    if (session === null) return Promise.resolve({ wasLive: false, code: 0 });
    const url = `${this.base.replace(/^http/, "ws")}/api/ws/chat/${encodeURIComponent(session.session_id)}`;
    return new Promise((resolve) => {
      let ws: SocketLike;
      try {
        ws = factory(url);
      } catch {
        resolve({ wasLive: false, code: 0 });
        return;
      }
      this.ws = ws;
      let wasLive = false;
      let heard = Date.now();
      const intervalMs = (this.options.heartbeatSeconds ?? 20) * 1000;
      const heartbeat = setInterval(() => {
        if (Date.now() - heard > DEAD_AFTER_INTERVALS * intervalMs) {
          ws.close(4000, "no heartbeat");
        } else if (ws.readyState === OPEN) {
          ws.send(JSON.stringify({ type: "ping" }));
        }
      }, intervalMs);
      ws.onmessage = (event) => {
        heard = Date.now();
        let frame: ChatServerFrame;
        try {
          frame = JSON.parse(frameText(event.data)) as ChatServerFrame;
        } catch {
          return;
        }
        if (frame.type === "session") {
          // first frame: catch up, then (re)send what the bridge has not acknowledged
          this.write({ type: "resume", after: this.cursor });
          for (const item of this.pending.values()) this.write(item.frame);
          wasLive = true;
          this.live = true;
          this.stopPolling(); // the socket is back: it carries everything again
        }
        this.receive(frame);
        if (frame.type === "session") this.emit("connection", { connected: true });
      };
      ws.onerror = () => {
        // a close always follows
      };
      ws.onclose = (event) => {
        clearInterval(heartbeat);
        if (this.ws === ws) this.ws = null;
        if (wasLive) {
          this.live = false;
          this.emit("connection", { connected: false });
        }
        resolve({ wasLive, code: event.code });
      };
    });
  }

  private startPolling(): void {
    if (this.polling !== null || this.stopper.signal.aborted) return;
    this.polling = new AbortController();
    void this.pollLoop(this.polling.signal);
  }

  private stopPolling(): void {
    this.polling?.abort();
    this.polling = null;
    this.pollLive = false;
  }

  /** Long-poll the history: the first request answers at once (it catches up and says
   * whether polling works), later ones wait for news. */
  private async pollLoop(signal: AbortSignal): Promise<void> {
    const http = this.options.fetch ?? fetch;
    const initial = this.options.reconnectInitialDelayMs ?? 500;
    const max = this.options.reconnectMaxDelayMs ?? 30_000;
    let failures = 0;
    while (!signal.aborted) {
      const session = this.sessionInfo;
      if (session === null) return;
      const wait = this.pollLive ? (this.options.pollWaitSeconds ?? 25) : 0;
      const after = this.cursor ? `&after=${encodeURIComponent(this.cursor)}` : "";
      const path = `/api/webchat/sessions/${encodeURIComponent(session.session_id)}/messages`;
      let delay = 0;
      try {
        const response = await http(`${this.base}${path}?wait=${wait}${after}`, { signal });
        if (response.status === 404) {
          await this.openSession(session.session_id); // unknown or expired: a new session
          continue;
        }
        if (!response.ok) throw new ChatError(String(response.status), await response.text());
        const body = (await response.json()) as {
          messages: ChatMessage[];
          cursor: string | null;
          typing?: boolean;
        };
        if (signal.aborted) return;
        failures = 0;
        if (!this.pollLive) {
          this.pollLive = true;
          void this.postPending();
          this.emit("connection", { connected: true });
        }
        if (this.pending.size > 0) void this.postPending(); // e.g. after a 429
        for (const message of body.messages) this.receive({ type: "message", message });
        if (body.cursor) this.cursor = body.cursor;
        if (Boolean(body.typing) !== this.typingOn) {
          this.receive({ type: "typing", on: Boolean(body.typing) });
        }
      } catch {
        if (signal.aborted) return;
        if (this.pollLive) {
          this.pollLive = false;
          this.emit("connection", { connected: false });
        }
        delay = reconnectDelay(failures, initial, max);
        failures += 1;
      }
      if (delay > 0) await pause(delay, signal);
    }
  }

  /** POST the queued messages (long-polling). A refused one rejects its promise; one that
   * could not be sent stays queued for the next try. */
  private async postPending(): Promise<void> {
    const session = this.sessionInfo;
    if (session === null) return;
    const http = this.options.fetch ?? fetch;
    const path = `/api/webchat/sessions/${encodeURIComponent(session.session_id)}/messages`;
    await Promise.all(
      [...this.pending.values()]
        .filter((item) => !item.posting)
        .map(async (item) => {
          item.posting = true;
          const { content, files, ...rest } = item.frame;
          const { type: _type, ...fields } = rest;
          try {
            const response = await http(`${this.base}${path}`, {
              method: "POST",
              headers: { "Content-Type": "application/json" },
              body: JSON.stringify({ ...fields, text: content, ...(files ? { files } : {}) }),
            });
            const body = (await response.json()) as {
              status: string;
              message_id: string;
              error?: { code: string; message: string };
            };
            if (response.ok) {
              this.receive({
                type: "ack",
                client_message_id: item.frame.client_message_id,
                message_id: body.message_id,
                status: body.status,
              });
            } else if (response.status !== 429 && response.status < 500) {
              this.pending.delete(item.frame.client_message_id);
              item.reject(
                new ChatError(
                  body.error?.code ?? String(response.status),
                  body.error?.message ?? "",
                ),
              );
            }
          } catch {
            // the network: kept for the next try
          } finally {
            item.posting = false;
          }
        }),
    );
  }

  private write(frame: ChatClientFrame): void {
    if (this.ws?.readyState === OPEN) this.ws.send(JSON.stringify(frame));
  }

  private receive(frame: ChatServerFrame): void {
    switch (frame.type) {
      case "ping":
        this.write({ type: "pong" });
        break;
      case "typing":
        this.typingOn = frame.on;
        break;
      case "history":
        for (const message of frame.messages) this.seen(message);
        if (frame.cursor) this.cursor = frame.cursor;
        break;
      case "message":
        this.seen(frame.message);
        break;
      case "agent_streaming": {
        const pieces = this.streams.get(frame.turn_id) ?? [];
        pieces[frame.stream_index] = frame.content;
        this.streams.set(frame.turn_id, pieces);
        break;
      }
      case "ack": {
        const item = frame.client_message_id ? this.pending.get(frame.client_message_id) : null;
        if (item && frame.client_message_id) {
          this.pending.delete(frame.client_message_id);
          item.resolve(frame);
        }
        break;
      }
      case "error": {
        const item = frame.client_message_id ? this.pending.get(frame.client_message_id) : null;
        if (item && frame.code === "rate_limited") {
          // kept in the queue: sent again once the bridge allows it
          const wait = Math.max(1, frame.retry_after ?? 1) * 1000;
          setTimeout(() => {
            if (this.live && this.pending.get(item.frame.client_message_id) === item) {
              this.write(item.frame);
            }
          }, wait);
        } else if (item && frame.client_message_id) {
          this.pending.delete(frame.client_message_id);
          item.reject(new ChatError(frame.code, frame.message));
        }
        break;
      }
      case "session_created":
        if (frame.uid && this.sessionInfo && frame.uid !== this.sessionInfo.uid) {
          this.sessionInfo = { ...this.sessionInfo, uid: frame.uid, conversation_id: null };
        }
        break;
      default:
        break;
    }
    this.emit(frame.type, frame);
  }

  private seen(message: ChatMessage): void {
    this.cursor = message.id;
    if (message.turn_id) this.streams.delete(message.turn_id);
    const conversation = message.conversation_id;
    if (typeof conversation === "string" && this.sessionInfo) {
      this.sessionInfo = { ...this.sessionInfo, conversation_id: conversation };
    }
  }

  private emit(type: string, frame: unknown): void {
    for (const listener of this.listeners.get(type) ?? []) {
      try {
        (listener as (frame: unknown) => void)(frame);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
