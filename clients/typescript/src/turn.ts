// One turn as a handler sees it, and how a handler's result becomes the answer frames. Shared
// by every way of reaching the bridge (dial-in WebSocket, http pull): each gives a `send`.
import type {
  AgentComplete,
  AgentHandoff,
  AgentMessage,
  AgentToBridge,
  ErrorMessage,
  FileRef,
  Handoff,
  HistoryMessage,
  NoReply,
  Sender,
  TurnContext,
  UserMessage,
} from "./types.js";

/** Longest `status_update` / `progress_update` line the bridge takes. */
export const STATUS_MAX = 200;
/** Longest notice the bridge takes. */
export const NOTICE_MAX = 2000;

type TurnIds = { message_id?: string; conversation_id?: string | null };
type Loose<T> = Omit<T, "message_id" | "conversation_id"> & TurnIds;

/** An answer frame a handler may return; the turn's `message_id` and `conversation_id` are
 * filled in when it leaves them out. */
export type AnswerFrame =
  | Loose<AgentMessage>
  | Loose<AgentComplete>
  | Loose<Handoff>
  | Loose<NoReply>
  | Loose<ErrorMessage>
  | Loose<AgentHandoff>;

/** What a handler returns: text (the reply; after `turn.stream(…)`, the streamed reply's
 * whole text), text pieces to stream (any async iterable of strings), an answer frame, or
 * nothing (`no_reply`; after `turn.stream(…)`, the end of the streamed reply). */
export type Reply = string | AsyncIterable<string> | AnswerFrame | null | undefined | void;

export type TurnHandler = (turn: Turn) => Reply | Promise<Reply>;

/** Sends one frame for the turn; resolves whether it went out (or was queued to). */
export type SendFrame = (frame: AgentToBridge) => Promise<boolean>;

/** One turn: the customer's message(s) and the calls that report on the work. */
export class Turn {
  /** The `user_message` as the bridge sent it. */
  readonly frame: UserMessage;
  readonly id: string;
  readonly conversationId: string;
  /** Every customer message of the turn, newline-joined. */
  readonly content: string;
  readonly messages: HistoryMessage[];
  readonly files: FileRef[];
  readonly sender: Sender | null;
  readonly context: TurnContext | null;
  readonly channel: string | null;
  /** The bot's session for this conversation had expired: start a new context. */
  readonly fresh: boolean;
  readonly agent: string | null;
  readonly role: string | null;
  /** The W3C trace context of the bridge's span calling the agent, when the bridge traces:
   * make your spans its children. */
  readonly traceparent: string | null;
  private readonly aborter = new AbortController();
  private readonly sendFrame: SendFrame;
  private streamIndex = 0;
  private streamed: string[] = [];
  private cancelReasonText: string | null = null;

  constructor(frame: UserMessage, send: SendFrame) {
    this.frame = frame;
    this.id = frame.message_id;
    this.conversationId = frame.conversation_id;
    this.content = frame.content ?? "";
    this.messages = frame.messages ?? [];
    this.files = frame.files ?? [];
    this.sender = frame.sender ?? null;
    this.context = frame.context ?? null;
    this.channel = frame.channel ?? null;
    this.fresh = frame.fresh ?? false;
    this.agent = frame.agent ?? null;
    this.role = frame.role ?? null;
    this.traceparent = frame.traceparent ?? null;
    this.sendFrame = send;
  }

  /** Aborted when the bridge withdraws the turn (`cancel`): stop working; nothing more is
   * sent for it. */
  get signal(): AbortSignal {
    return this.aborter.signal;
  }

  get cancelled(): boolean {
    return this.aborter.signal.aborted;
  }

  get cancelReason(): string | null {
    return this.cancelReasonText;
  }

  /** The option the customer picked from the agent's last choices, if any. */
  get choice(): { id: string; title: string } | null {
    const last = this.messages[this.messages.length - 1];
    const metadata = last?.metadata as { interactive?: { id: string; title: string } } | undefined;
    return metadata?.interactive ?? null;
  }

  /** @internal The bridge withdrew the turn. */
  cancel(reason: string): void {
    this.cancelReasonText = reason;
    this.aborter.abort(reason);
  }

  /** Whether `stream()` sent any piece. */
  get streaming(): boolean {
    return this.streamIndex > 0;
  }

  /** @internal The pieces streamed so far, joined. */
  streamedText(): string {
    return this.streamed.join("");
  }

  private send(frame: AgentToBridge): Promise<boolean> {
    if (this.cancelled) return Promise.resolve(false);
    return this.sendFrame(frame);
  }

  /** @internal Send the frame that ends the turn. */
  sendAnswer(frame: AgentToBridge): Promise<boolean> {
    return this.send(frame);
  }

  /** Show a line on what the agent is doing (cut to 200 characters). Live only. */
  status(text: string): Promise<boolean> {
    return this.send({
      type: "status_update",
      message_id: this.id,
      conversation_id: this.conversationId,
      content: text.slice(0, STATUS_MAX) || "…",
    });
  }

  /** How far a long task is, 0 to 1 (clamped), with an optional line. Live only. */
  progress(fraction: number, text?: string): Promise<boolean> {
    const progress = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
    return this.send({
      type: "progress_update",
      message_id: this.id,
      conversation_id: this.conversationId,
      progress,
      ...(text === undefined ? {} : { content: text.slice(0, STATUS_MAX) }),
    });
  }

  /** Send the next piece of a streamed reply. Return nothing from the handler to end it
   * (`agent_complete`), or an `agent_complete` frame of your own. */
  stream(piece: string): Promise<boolean> {
    this.streamed.push(piece);
    const frame: AgentToBridge = {
      type: "agent_streaming",
      message_id: this.id,
      conversation_id: this.conversationId,
      stream_index: this.streamIndex,
      content: piece,
    };
    this.streamIndex += 1;
    return this.send(frame);
  }

  /** Show or hide the typing indicator. */
  typing(on = true): Promise<boolean> {
    return this.send({ type: "typing", conversation_id: this.conversationId, on });
  }

  fileProcessing(fileId: string, text?: string): Promise<boolean> {
    return this.send({ type: "file_processing", ...this.fileIds(fileId), content: text });
  }

  fileComplete(fileId: string, text?: string): Promise<boolean> {
    return this.send({ type: "file_complete", ...this.fileIds(fileId), content: text });
  }

  fileError(fileId: string, error: string): Promise<boolean> {
    return this.send({
      type: "file_error",
      ...this.fileIds(fileId),
      error: error.slice(0, NOTICE_MAX),
    });
  }

  /** A notice into the conversation, shown apart from the dialogue. */
  notice(text: string, level: "system" | "warning" = "system"): Promise<boolean> {
    return this.send({
      type: level === "warning" ? "warning_message" : "system_message",
      message_id: this.id,
      conversation_id: this.conversationId,
      content: text.slice(0, NOTICE_MAX),
    });
  }

  private fileIds(fileId: string): {
    message_id: string;
    conversation_id: string;
    file_id: string;
  } {
    return { message_id: this.id, conversation_id: this.conversationId, file_id: fileId };
  }
}

/** A turn's identity across bridges and reconnects: its conversation and its id. */
export function turnKey(frame: { conversation_id: string; message_id: string }): string {
  return `${frame.conversation_id}\u0000${frame.message_id}`;
}

function isAsyncIterable(value: unknown): value is AsyncIterable<string> {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { [Symbol.asyncIterator]?: unknown })[Symbol.asyncIterator] === "function"
  );
}

/** Run `handler` on `turn` and send its answer. Returns the frame that ended the turn (what
 * to send again should the bridge offer the same turn once more), or null when the turn was
 * cancelled and nothing was answered. */
export async function runTurn(turn: Turn, handler: TurnHandler): Promise<AgentToBridge | null> {
  let answer: AgentToBridge;
  try {
    let reply = await handler(turn);
    if (isAsyncIterable(reply)) {
      for await (const piece of reply) {
        if (turn.cancelled) break;
        await turn.stream(piece);
      }
      reply = undefined;
    }
    answer = answerFrame(turn, reply as Exclude<Reply, AsyncIterable<string>>);
  } catch (error) {
    answer = {
      type: "error_message",
      message_id: turn.id,
      error_code: "handler_error",
      error_details: { message: error instanceof Error ? error.message : String(error) },
    };
  }
  if (turn.cancelled) return null;
  await turn.sendAnswer(answer);
  return answer;
}

function answerFrame(turn: Turn, reply: Exclude<Reply, AsyncIterable<string>>): AgentToBridge {
  const ids = { message_id: turn.id, conversation_id: turn.conversationId };
  if (typeof reply === "string") {
    if (turn.streaming) {
      return { type: "agent_complete", ...ids, content: reply }; // the whole text
    }
    return { type: "agent_message", ...ids, content: reply };
  }
  if (reply === null || reply === undefined) {
    if (turn.streaming) {
      return { type: "agent_complete", ...ids, content: turn.streamedText() };
    }
    return { type: "no_reply", message_id: turn.id };
  }
  if (reply.type === "error_message" || reply.type === "no_reply") {
    return { ...reply, message_id: reply.message_id ?? turn.id } as AgentToBridge;
  }
  if (reply.type === "agent_complete" && !("content" in reply && reply.content != null)) {
    return { ...ids, ...reply, content: turn.streamedText() } as AgentToBridge;
  }
  return { ...ids, ...stripNullIds(reply) } as AgentToBridge;
}

function stripNullIds<T extends TurnIds>(frame: T): T {
  const copy = { ...frame };
  if (copy.message_id == null) delete copy.message_id;
  if (copy.conversation_id == null) delete copy.conversation_id;
  return copy;
}

/** Whether `frame` ends a turn (what is kept, and sent again after a reconnect). */
export function isAnswer(frame: AgentToBridge): boolean {
  switch (frame.type) {
    case "agent_message":
    case "error_message":
      return Boolean(frame.message_id); // without one: proactive, or about no turn
    case "agent_complete":
    case "no_reply":
    case "handoff":
    case "agent_handoff":
      return true;
    default:
      return false;
  }
}
