// An agent in TypeScript: one set of handlers, reached by the bridge in either of two ways the
// agent starts itself (no inbound port on its side):
//
// - `dialIn(url, token)`: a WebSocket to the bridge's `/api/ws/agent`, `hello` with the
//   revision and features, resume from the last turn seen, heartbeat, reconnect with backoff.
// - `pull(url, token)`: long-polls `GET /api/agent/turns` and posts each answer to the turn's
//   reply URL under its lease.
//
// A turn the bridge offers again (after a reconnect or a lapsed lease) is answered from what
// was kept for it, never run twice.
import { pause, reconnectDelay } from "./backoff.js";
import { type SocketFactory, type SocketLike, OPEN, frameText, globalSocket } from "./socket.js";
import { type PullOptions, pullTurns } from "./pull.js";
import { type SendFrame, type TurnHandler, Turn, isAnswer, runTurn, turnKey } from "./turn.js";
import type {
  AgentToBridge,
  BridgeToAgent,
  ConversationEvent,
  HelloOk,
  SessionCreated,
  SessionExpired,
  SessionUpdated,
  SystemMessage,
  UserMessage,
  WarningMessage,
} from "./types.js";

export { Turn, type Reply, type AnswerFrame, type TurnHandler } from "./turn.js";
export { PullRefused, type PullOptions, type PulledTurn } from "./pull.js";

/** The protocol's wire name and the revision this client speaks. */
export const PROTOCOL = "chatbridge/1";
export const REVISION = "1.3";
/** The features every agent of this client handles; `sessions` and `notices` are added when
 * there is a handler for them. */
export const BASE_FEATURES = [
  "status",
  "progress",
  "files",
  "file_events",
  "rich_data",
  "agent_handoff",
];
const KEPT_ANSWERS = 1000;
const RESEND_WINDOW = 200;
const HELLO_TIMEOUT_MS = 10_000;
const DEAD_AFTER_INTERVALS = 3;

export type SessionFrame = SessionCreated | SessionUpdated | SessionExpired;
export type NoticeFrame = SystemMessage | WarningMessage;

/** The bridge refused the agent's `hello` (a wrong token, an unknown agent id): retrying
 * would not help, so `dialIn` stops with this error. */
export class HelloRejected extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(`the bridge refused agent hello: ${code}: ${message}`);
    this.name = "HelloRejected";
    this.code = code;
  }
}

export interface AgentOptions {
  /** Features to announce instead of the default (`BASE_FEATURES`, plus `sessions` /
   * `notices` when `onSession` / `onNotice` has a handler). */
  features?: string[];
  /** Opens WebSockets (default: the platform's, else the `ws` package's). */
  socket?: SocketFactory;
  /** The HTTP client of `pull` (default: the global `fetch`). */
  fetch?: typeof fetch;
  reconnectInitialDelayMs?: number;
  reconnectMaxDelayMs?: number;
  /** Where the one-line start-up and connection messages go; `null` for silence. */
  log?: ((line: string) => void) | null;
}

export interface DialInOptions {
  /** Stops the connection (as `stop()` does) when aborted. */
  signal?: AbortSignal;
}

/** One WebSocket connection to the bridge, while it is open. */
interface Link {
  ws: SocketLike;
  ready: boolean;
  /** A connection the bridge opened (ws-dial-out): answers go back on it, never queued. */
  served?: boolean;
  sent: AgentToBridge[];
}

/** An agent: handlers for turns (and sessions, notices, conversation events), and the ways to
 * reach a bridge. */
export class Agent {
  readonly agentId: string;
  /** The highest `seq` of the turns received (dial-in resume). */
  lastSeq: number | null = null;
  private turnHandler: TurnHandler | null = null;
  private sessionHandler: ((frame: SessionFrame) => void | Promise<void>) | null = null;
  private noticeHandler: ((frame: NoticeFrame) => void | Promise<void>) | null = null;
  private eventHandler: ((frame: ConversationEvent) => void | Promise<void>) | null = null;
  private readonly options: AgentOptions;
  private readonly kept = new Map<string, AgentToBridge>();
  private readonly running = new Map<string, Turn>();
  private readonly linkId = `ts-${Math.random().toString(36).slice(2, 12)}`;
  private readonly stopper = new AbortController();
  private link: Link | null = null;
  /** Every socket of this agent not yet closed, ready or still connecting. */
  private readonly sockets = new Set<SocketLike>();
  /** Closes each server of `serve()`. */
  private readonly servers = new Set<() => void>();
  private previousSent: AgentToBridge[] = [];
  private outbox: AgentToBridge[] = [];
  private connectedWaiters: Array<() => void> = [];
  private readonly connectionListeners = new Set<(connected: boolean) => void>();

  constructor(agentId: string, options: AgentOptions = {}) {
    this.agentId = agentId;
    this.options = options;
  }

  /** Answer turns with `handler` (see `Reply` for what it may return). */
  onUserMessage(handler: TurnHandler): this {
    this.turnHandler = handler;
    return this;
  }

  /** Web chat sessions starting, changing, ending (announces the feature `sessions`). */
  onSession(handler: (frame: SessionFrame) => void | Promise<void>): this {
    this.sessionHandler = handler;
    return this;
  }

  /** Notices the bridge puts into the agent's conversations (feature `notices`). */
  onNotice(handler: (frame: NoticeFrame) => void | Promise<void>): this {
    this.noticeHandler = handler;
    return this;
  }

  /** Conversation events: handed to a human or back, closed, reopened, … */
  onConversationEvent(handler: (frame: ConversationEvent) => void | Promise<void>): this {
    this.eventHandler = handler;
    return this;
  }

  /** The features this agent announces. */
  get features(): string[] {
    if (this.options.features) return [...this.options.features];
    const features = [...BASE_FEATURES];
    if (this.sessionHandler) features.push("sessions");
    if (this.noticeHandler) features.push("notices");
    return features;
  }

  /** Whether a dial-in connection is open and past its `hello_ok`. */
  get connected(): boolean {
    return this.link?.ready ?? false;
  }

  /** Called with `true` when a dial-in connection is ready, `false` when it is lost;
   * returns the function that unsubscribes. */
  onConnectionChange(listener: (connected: boolean) => void): () => void {
    this.connectionListeners.add(listener);
    return () => this.connectionListeners.delete(listener);
  }

  private connectionChanged(connected: boolean): void {
    for (const listener of this.connectionListeners) listener(connected);
  }

  /** Resolves once a dial-in connection is ready (at once if one is). */
  waitConnected(): Promise<void> {
    if (this.connected) return Promise.resolve();
    return new Promise((resolve) => this.connectedWaiters.push(resolve));
  }

  /** Stop every `dialIn`, `pull`, `serve` and `serveWebhook` of this agent for good; their
   * promises then resolve. */
  stop(): void {
    this.stopper.abort();
    for (const ws of this.sockets) ws.close(1000, "agent stopping");
    for (const close of this.servers) close();
  }

  /** Close the current dial-in connection; the agent reconnects and resumes. */
  disconnect(): void {
    this.link?.ws.close(4000, "agent reconnecting");
  }

  private log(line: string): void {
    const log = this.options.log === undefined ? defaultLog : this.options.log;
    log?.(line);
  }

  // -- dial-in ---------------------------------------------------------------------------------

  /** Connect to the bridge at `url` (`ws(s)://host/api/ws/agent`, or the bridge's base URL)
   * and stay connected — reconnecting with backoff and resuming — until `stop()`.
   *
   * @throws HelloRejected when the bridge refuses the token or agent id. */
  async dialIn(url: string, token: string, options: DialInOptions = {}): Promise<void> {
    const target = agentSocketUrl(url);
    const factory = this.options.socket ?? (await defaultSocket());
    const initial = this.options.reconnectInitialDelayMs ?? 500;
    const max = this.options.reconnectMaxDelayMs ?? 30_000;
    const stop = anySignal(this.stopper.signal, options.signal);
    const onStop = (): void => {
      for (const ws of this.sockets) ws.close(1000, "agent stopping");
    };
    stop.addEventListener("abort", onStop, { once: true });
    let attempt = 0;
    try {
      while (!stop.aborted) {
        const ready = await this.connectOnce(factory, target, token, stop);
        if (ready) attempt = 0;
        if (stop.aborted) break;
        await pause(reconnectDelay(attempt, initial, max), stop);
        attempt += 1;
      }
    } finally {
      stop.removeEventListener("abort", onStop);
    }
  }

  /** One connection, from the upgrade to its close. Resolves whether it got `hello_ok`;
   * rejects with `HelloRejected`. */
  private connectOnce(
    factory: SocketFactory,
    url: string,
    token: string,
    stop: AbortSignal,
  ): Promise<boolean> {
    return new Promise((resolve, reject) => {
      let ws: SocketLike;
      try {
        ws = factory(url);
      } catch (error) {
        this.log(`cannot open ${url}: ${String(error)}`);
        resolve(false);
        return;
      }
      const link: Link = { ws, ready: false, sent: [] };
      this.sockets.add(ws);
      let heard = Date.now();
      let heartbeat: ReturnType<typeof setInterval> | undefined;
      const helloTimer = setTimeout(() => ws.close(4000, "no hello_ok"), HELLO_TIMEOUT_MS);
      ws.onopen = () => {
        const hello: AgentToBridge = {
          type: "hello",
          agent_id: this.agentId,
          token,
          protocol: PROTOCOL,
          version: REVISION,
          features: this.features,
          metadata: { link_id: this.linkId },
          ...(this.lastSeq === null ? {} : { resume_from: this.lastSeq }),
        };
        ws.send(JSON.stringify(hello));
      };
      ws.onmessage = (event) => {
        heard = Date.now();
        let frame: BridgeToAgent;
        try {
          frame = JSON.parse(frameText(event.data)) as BridgeToAgent;
        } catch {
          this.sendOn(link, { type: "error_message", error_code: "invalid_json" });
          return;
        }
        if (!link.ready) {
          if (frame.type === "hello_error") {
            clearTimeout(helloTimer);
            reject(new HelloRejected(frame.error_code, frame.message ?? ""));
            ws.close(1000, "refused");
          } else if (frame.type === "hello_ok") {
            clearTimeout(helloTimer);
            if (stop.aborted) {
              ws.close(1000, "agent stopping"); // stopped while connecting
              return;
            }
            heartbeat = this.ready(link, frame, url, () => heard);
          }
          return;
        }
        this.dispatch(link, frame);
      };
      let failure: string | null = null;
      ws.onerror = (event) => {
        // a close always follows; the `ws` package says why (a refused upgrade, no server)
        const message = (event as { message?: unknown } | null)?.message;
        failure = typeof message === "string" && message ? message : "connection failed";
      };
      ws.onclose = (event) => {
        clearTimeout(helloTimer);
        this.sockets.delete(ws);
        if (!link.ready && failure !== null && !stop.aborted) {
          const hint = /\b404\b/.test(failure) ? " (is it the bridge's /api/ws/agent?)" : "";
          this.log(`cannot connect to ${url}: ${failure}${hint}; retrying`);
        }
        if (heartbeat !== undefined) clearInterval(heartbeat);
        if (this.link === link) {
          this.link = null;
          this.previousSent = link.sent;
        }
        if (link.ready) {
          this.log(`connection to ${url} closed (${event.code})`);
          this.connectionChanged(false);
        }
        resolve(link.ready);
      };
    });
  }

  /** `hello_ok` came: the link carries turns from now on. Returns its heartbeat timer. */
  private ready(
    link: Link,
    ok: HelloOk,
    url: string,
    heard: () => number,
  ): ReturnType<typeof setInterval> {
    link.ready = true;
    this.link = link;
    this.log(
      `connected to ${url} as agent ${this.agentId} (revision ${ok.version ?? "1.2"}, ` +
        `features ${(ok.features ?? []).join(",") || "none"})`,
    );
    // Answers sent on the connection before may not have reached the bridge; the bridge
    // drops any it already has. Then what was answered while disconnected.
    const again = [...this.previousSent, ...this.outbox];
    this.previousSent = [];
    this.outbox = [];
    for (const frame of again) this.sendOn(link, frame);
    for (const resolve of this.connectedWaiters.splice(0)) resolve();
    this.connectionChanged(true);
    const intervalMs = Math.max(0.05, ok.heartbeat_interval) * 1000;
    return setInterval(() => {
      if (Date.now() - heard() > DEAD_AFTER_INTERVALS * intervalMs) {
        link.ws.close(4000, "no heartbeat");
      } else {
        this.sendOn(link, { type: "ping" });
      }
    }, intervalMs);
  }

  private sendOn(link: Link, frame: AgentToBridge): boolean {
    if (link.ws.readyState !== OPEN) return false;
    link.ws.send(JSON.stringify(frame));
    if (isAnswer(frame)) {
      link.sent.push(frame);
      if (link.sent.length > RESEND_WINDOW) link.sent.shift();
    }
    return true;
  }

  /** Send on the open link; an answer waits for the next one when there is none (live
   * frames are dropped then: they would be stale). */
  private async sendLive(frame: AgentToBridge): Promise<boolean> {
    const link = this.link;
    if (link?.ready && this.sendOn(link, frame)) return true;
    if (isAnswer(frame)) {
      this.outbox.push(frame);
      return true;
    }
    return false;
  }

  private dispatch(link: Link, frame: BridgeToAgent): void {
    switch (frame.type) {
      case "ping":
        this.sendOn(link, { type: "pong" });
        return;
      case "user_message":
        if (typeof frame.seq === "number") {
          this.lastSeq = Math.max(this.lastSeq ?? 0, frame.seq);
          this.sendOn(link, { type: "ack", seq: frame.seq });
        }
        void this.startTurn(frame, (f) =>
          link.served ? Promise.resolve(this.sendOn(link, f)) : this.sendLive(f),
        );
        return;
      case "cancel":
        this.cancelTurn(frame.conversation_id, frame.message_id, frame.reason ?? "superseded");
        return;
      case "session_created":
      case "session_updated":
      case "session_expired":
        void this.call(this.sessionHandler, frame);
        return;
      case "system_message":
      case "warning_message":
        void this.call(this.noticeHandler, frame);
        return;
      case "conversation_event":
        void this.call(this.eventHandler, frame);
        return;
      case "error_message":
        this.log(`the bridge reported ${frame.error_code}: ${JSON.stringify(frame.error_details)}`);
        return;
      default:
        return;
    }
  }

  private async call<F>(handler: ((frame: F) => void | Promise<void>) | null, frame: F) {
    if (handler === null) return;
    try {
      await handler(frame);
    } catch (error) {
      this.log(`handler failed: ${String(error)}`);
    }
  }

  /** Run a turn, or answer it from what was kept when it comes again. Resolves when the turn
   * is answered (`answered`), or at once when it is already running (`busy`: its answer goes
   * out when it is ready). */
  private startTurn(frame: UserMessage, send: SendFrame): Promise<"answered" | "busy"> {
    const key = turnKey(frame);
    const kept = this.kept.get(key);
    if (kept !== undefined) return send(kept).then(() => "answered");
    if (this.running.has(key)) return Promise.resolve("busy");
    const handler = this.turnHandler;
    if (handler === null) {
      const refusal: AgentToBridge = {
        type: "error_message",
        message_id: frame.message_id,
        error_code: "no_handler",
      };
      return send(refusal).then(() => "answered");
    }
    // The answer is kept as it leaves, so that an offer of the same turn arriving at once
    // after it is answered from it.
    const turn = new Turn(frame, (out) => {
      if (isAnswer(out)) this.keep(key, out);
      return send(out);
    });
    this.running.set(key, turn);
    return runTurn(turn, handler)
      .finally(() => this.running.delete(key))
      .then(() => "answered");
  }

  /** Withdraw a running turn (a `cancel` from the bridge). */
  private cancelTurn(conversationId: string | null | undefined, turnId: string, reason: string) {
    for (const [key, turn] of this.running) {
      if (turn.id !== turnId) continue;
      if (
        conversationId &&
        key !== turnKey({ conversation_id: conversationId, message_id: turnId })
      )
        continue;
      turn.cancel(reason);
    }
  }

  private keep(key: string, answer: AgentToBridge): void {
    this.kept.set(key, answer);
    if (this.kept.size > KEPT_ANSWERS) {
      const oldest = this.kept.keys().next().value;
      if (oldest !== undefined) this.kept.delete(oldest);
    }
  }

  // -- served (ws-dial-out) -----------------------------------------------------------------

  /** Be a WebSocket server the bridge dials (the route's `websocket_url`, transport
   * ws-dial-out) until `stop()`. Node.js only (the `ws` package). The bridge speaks first, with
   * no `hello`; the route's `options.features` announce this agent's features.
   *
   * @returns the port it listens on (`port` 0 picks a free one). */
  async serve(port = 8765, host = "127.0.0.1"): Promise<number> {
    const { WebSocketServer } = await import("ws");
    const server = new WebSocketServer({ port, host });
    await new Promise<void>((resolve, reject) => {
      server.once("listening", resolve);
      server.once("error", reject);
    });
    const bound = (server.address() as { port: number }).port;
    const close = (): void => {
      for (const client of server.clients) client.close(1001, "agent stopping");
      server.close();
    };
    this.servers.add(close);
    if (this.stopper.signal.aborted) close();
    server.on("connection", (ws) => {
      const link: Link = { ws, ready: true, sent: [], served: true };
      ws.onmessage = (event) => {
        let frame: BridgeToAgent;
        try {
          frame = JSON.parse(frameText(event.data)) as BridgeToAgent;
        } catch {
          this.sendOn(link, { type: "error_message", error_code: "invalid_json" });
          return;
        }
        this.dispatch(link, frame);
      };
    });
    this.log(`agent ${this.agentId} listening on ws://${host}:${bound}`);
    return bound;
  }

  // -- http-webhook ------------------------------------------------------------------------

  /** Answer the turns the bridge POSTs (transport http-webhook: the route's `webhook_url` and
   * `secret`) until `stop()`. Node.js only. Each request's signature is checked; the answer,
   * with the status, progress and streamed frames before it, goes back in the response.
   *
   * @returns the port it listens on (`port` 0 picks a free one). */
  async serveWebhook(secret: string, port = 8080, host = "127.0.0.1"): Promise<number> {
    const { listenForTurns } = await import("./webhook.js");
    const { port: bound, close } = await listenForTurns(
      {
        secret,
        log: (line) => this.log(line),
        answer: (frame, send) => this.startTurn(frame, send),
        cancel: (frame) =>
          this.cancelTurn(frame.conversation_id, frame.message_id, frame.reason ?? "superseded"),
      },
      port,
      host,
    );
    this.servers.add(close);
    if (this.stopper.signal.aborted) close();
    this.log(`agent ${this.agentId} answering webhooks on http://${host}:${bound}`);
    return bound;
  }

  // -- http pull -------------------------------------------------------------------------------

  /** Long-poll the bridge at `url` (its base URL, `http(s)://host`) for turns and answer them
   * until `stop()`. Errors are retried with backoff, honouring `Retry-After`.
   *
   * @throws PullRefused on 401 (bad token or agent id) or 409 (not an http-pull agent). */
  pull(url: string, token: string, options: PullOptions = {}): Promise<void> {
    return pullTurns(
      {
        agentId: this.agentId,
        // called as a plain function: a browser's fetch refuses another `this`
        fetch: (input, init) => (this.options.fetch ?? fetch)(input, init),
        stop: anySignal(this.stopper.signal, options.signal),
        initialDelayMs: this.options.reconnectInitialDelayMs ?? 500,
        maxDelayMs: this.options.reconnectMaxDelayMs ?? 30_000,
        log: (line) => this.log(line),
        offer: (frame, send) => void this.startTurn(frame, send),
      },
      url,
      token,
      options,
    );
  }
}

/** The platform's WebSocket, else the `ws` package's (Node 20). Kept out of `socket.ts` so
 * that the chat client, which browsers load, never names `ws`. */
async function defaultSocket(): Promise<SocketFactory> {
  const own = globalSocket();
  if (own !== undefined) return own;
  const { WebSocket } = await import("ws");
  return (url) => new WebSocket(url);
}

function defaultLog(line: string): void {
  console.error(`chatbridge: ${line}`);
}

/** The agent socket's URL: a bridge's base URL (`https://bridge.example`) gets the path
 * `/api/ws/agent`; a URL with a path is taken as it is. */
export function agentSocketUrl(url: string): string {
  const target = new URL(url.replace(/^http(s?):\/\//, "ws$1://"));
  if (target.pathname === "" || target.pathname === "/") target.pathname = "/api/ws/agent";
  return target.toString();
}

function anySignal(...signals: Array<AbortSignal | undefined>): AbortSignal {
  const present = signals.filter((s): s is AbortSignal => s !== undefined);
  const controller = new AbortController();
  for (const signal of present) {
    if (signal.aborted) {
      controller.abort();
      break;
    }
    signal.addEventListener("abort", () => controller.abort(), { once: true });
  }
  return controller.signal;
}
