/* eslint-disable */
// Generated from schema/agent-protocol.json (the Python models' JSON Schema) by
// scripts/generate.mjs. Do not edit: run `npm run generate` after changing the protocol.

/**
 * Every message of the agent protocol, revision 1.3. Unknown fields are ignored by both sides; an unknown type is answered with error_message (unknown_type). Additions since 1.0 say 'Since 1.x' in their description.
 */
export type ProtocolMessage = BridgeToAgent | AgentToBridge;
/**
 * Messages the bridge sends to an agent.
 */
export type BridgeToAgent =
  | UserMessage
  | Cancel
  | Ping
  | Pong
  | HelloOk
  | HelloError
  | ErrorMessage
  | ConversationEvent
  | SessionCreated
  | SessionUpdated
  | SessionExpired
  | SystemMessage
  | WarningMessage;
/**
 * Messages an agent sends to the bridge.
 */
export type AgentToBridge =
  | AgentMessage
  | AgentStreaming
  | AgentComplete
  | Typing
  | Handoff
  | NoReply
  | ErrorMessage
  | Ack
  | Ping
  | Pong
  | Hello
  | AgentHandoff
  | StatusUpdate
  | ProgressUpdate
  | SystemMessage
  | WarningMessage
  | FileProcessing
  | FileComplete
  | FileError;

/**
 * One agent turn: the customer's message(s) and what the agent needs to answer them.
 *
 * ``message_id`` is the turn id the agent echoes in its answer; ``seq`` counts per agent and
 * serves ``ack`` and dial-in resume. A turn may carry several customer messages
 * (``messages``, in order; ``content`` is their text newline-joined); ``fresh`` (since 1.1)
 * says the bot's session for the conversation expired and a new context starts.
 */
export interface UserMessage {
  message_id: string;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "user_message";
  protocol?: string;
  seq?: number | null;
  conversation_id: string;
  inbox_id?: number | null;
  channel?: string | null;
  /**
   * Every customer message of the turn, in the order they were written, joined by newlines (the text of `messages`).
   */
  content?: string;
  /**
   * The customer messages this turn carries, oldest first: one, or several when messages written in a quick burst were merged into one turn (debounce), or held while the agent was answering. Each keeps its own id, time and attachments.
   */
  messages?: HistoryMessage[];
  sender?: Sender | null;
  context?: TurnContext | null;
  response_mode?: "sync" | "async";
  deadline?: string | null;
  /**
   * Since 1.1. True when the bot's session for this conversation had expired (no activity for the route's `expire_after`): start a new context and forget what you kept about this conversation. Absent or false: carry on as before.
   */
  fresh?: boolean;
  /**
   * Since 1.3. The files the customer attached to this turn's messages; each `file_url` is a short-lived signed URL serving its bytes.
   */
  files?: FileRef[];
  /**
   * Since 1.3. The agent id this turn is addressed to, when the route has several agents.
   */
  agent?: string | null;
  /**
   * Since 1.3. That agent's role on the route (`guide`, `billing`, …).
   */
  role?: string | null;
  /**
   * Optional. The W3C trace context (`00-<trace id>-<span id>-<flags>`) of the bridge's span calling the agent, sent when the bridge traces (OpenTelemetry): an agent that traces makes its spans children of it. Absent otherwise.
   */
  traceparent?: string | null;
}
/**
 * One customer message folded into a turn (debounce may merge several into one turn).
 */
export interface HistoryMessage {
  id?: string | null;
  content?: string | null;
  created_at?: string | null;
  attachments?: {
    [k: string]: unknown | undefined;
  }[];
  [k: string]: unknown | undefined;
}
/**
 * Who wrote, as the channel knows them.
 */
export interface Sender {
  id?: string | null;
  name?: string | null;
  email?: string | null;
  phone?: string | null;
  [k: string]: unknown | undefined;
}
/**
 * Where the conversation lives on the channel side.
 */
export interface TurnContext {
  channel?: string | null;
  created_at?: string | null;
  external_conversation_id?: string | null;
  additional_attributes?: {
    [k: string]: unknown | undefined;
  };
  [k: string]: unknown | undefined;
}
/**
 * Since 1.3. A file the customer attached, as the agent may fetch it.
 */
export interface FileRef {
  file_id: string;
  file_name: string;
  /**
   * A short-lived signed URL on the bridge serving the file's bytes.
   */
  file_url: string;
  mime: string;
  /**
   * In bytes.
   */
  size: number;
  [k: string]: unknown | undefined;
}
/**
 * Since 1.1. The bridge no longer wants an answer to the turn ``message_id``.
 *
 * Sent when a newer customer message superseded the turn (``reason`` ``superseded``): the
 * bridge starts a new turn with every message instead. Stop working on it; an answer the
 * agent still sends for it is discarded by the bridge. An agent that does not know this
 * frame may ignore it (answering ``error_message`` ``unknown_type`` is harmless too).
 */
export interface Cancel {
  /**
   * The turn (`user_message.message_id`) to stop.
   */
  message_id: string;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "cancel";
  conversation_id?: string | null;
  /**
   * Why: `superseded` (a newer customer message replaced the turn).
   */
  reason?: string;
}
/**
 * Heartbeat; either side sends it and the other answers ``pong``.
 */
export interface Ping {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "ping";
}
/**
 * Answer to ``ping``.
 */
export interface Pong {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "pong";
}
/**
 * Dial-in handshake accepted; tells the agent the heartbeat the bridge expects and (since
 * 1.3) the revision and features the two sides agreed on.
 */
export interface HelloOk {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "hello_ok";
  agent_id: string;
  protocol?: string;
  heartbeat_interval: number;
  /**
   * Since 1.3. The negotiated revision: the lower of the agent's `hello.version` and the bridge's; `1.2` when the agent announced none.
   */
  version?: string | null;
  /**
   * Since 1.3. The features both sides know, of those the agent announced: the bridge sends a feature's frames only when it is listed here.
   */
  features?: string[];
}
/**
 * Dial-in handshake refused; the bridge closes the connection (1008) right after.
 */
export interface HelloError {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "hello_error";
  error_code: string;
  message?: string;
}
/**
 * Something failed: a turn on the agent's side, or a frame the receiver could not read.
 *
 * Never answered with another ``error_message`` (that could loop).
 */
export interface ErrorMessage {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "error_message";
  error_code: string;
  error_details?: {
    [k: string]: unknown | undefined;
  };
}
/**
 * Something happened to a conversation the agent may care about (handoff, closed,
 * reopened, owner changed, widget opened). ``event`` names it; ``data`` carries the details.
 *
 * ``conversation_id`` is absent when the event comes before the bridge has a conversation
 * (e.g. a web chat widget opened before the first message).
 */
export interface ConversationEvent {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "conversation_event";
  event: string;
  conversation_id?: string | null;
  inbox_id?: number | null;
  channel?: string | null;
  owner?: string | null;
  reason?: string | null;
  sender?: Sender | null;
  data?: {
    [k: string]: unknown | undefined;
  };
}
/**
 * Since 1.3. A visitor's web chat session started (feature `sessions`).
 */
export interface SessionCreated {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  session_id: string;
  conversation_id?: string | null;
  /**
   * Where the session lives (`webchat`).
   */
  channel?: string;
  reason?: string | null;
  data?: {
    [k: string]: unknown | undefined;
  };
  type: "session_created";
}
/**
 * Since 1.3. A web chat session changed: its visitor, page or conversation (feature
 * `sessions`); `data` says what is new.
 */
export interface SessionUpdated {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  session_id: string;
  conversation_id?: string | null;
  /**
   * Where the session lives (`webchat`).
   */
  channel?: string;
  reason?: string | null;
  data?: {
    [k: string]: unknown | undefined;
  };
  type: "session_updated";
}
/**
 * Since 1.3. A web chat session ended (feature `sessions`); `reason` says why: `idle`
 * (no activity for the session's lifetime), `ended` (the visitor or an operator ended it).
 */
export interface SessionExpired {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  session_id: string;
  conversation_id?: string | null;
  /**
   * Where the session lives (`webchat`).
   */
  channel?: string;
  reason?: string | null;
  data?: {
    [k: string]: unknown | undefined;
  };
  type: "session_expired";
}
/**
 * Since 1.3. A notice in a conversation, shown apart from the dialogue (both directions;
 * to an agent only with feature `notices`). From an agent it is kept as a message by
 * `system` and reaches the customer's channel only where the route's policy says so.
 */
export interface SystemMessage {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  conversation_id: string;
  content: string;
  type: "system_message";
}
/**
 * Since 1.3. Like `system_message`, shown as a warning.
 */
export interface WarningMessage {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  conversation_id: string;
  content: string;
  type: "warning_message";
}
/**
 * A complete reply. With ``message_id`` it answers that turn; without it, but with
 * ``conversation_id``, it is a proactive message into that conversation.
 */
export interface AgentMessage {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "agent_message";
  conversation_id?: string | null;
  content?: string | null;
  attachments?: {
    [k: string]: unknown | undefined;
  }[];
  /**
   * Since 1.2. Send this stored template (WhatsApp).
   */
  template?: TemplateReply | null;
  /**
   * Since 1.2. Offer these choices with the reply.
   */
  interactive?: Interactive | null;
  /**
   * Since 1.3. Rich data (`cards`, `quick_replies`, `table`, `chart`, or any other kind) the web chat renders natively; every other channel receives a readable text fallback after `content`.
   */
  data?: (Cards | QuickReplies | Table | Chart | OtherRichData) | null;
}
/**
 * Since 1.2. Send a stored message template (WhatsApp) instead of free text: the only
 * kind of message Meta lets a business send once the 24-hour service window is closed.
 */
export interface TemplateReply {
  /**
   * The template's name.
   */
  name: string;
  /**
   * Its language code (`en_US`); omitted: the only language it is stored in.
   */
  language?: string | null;
  /**
   * A value for every parameter slot, keyed by the slot's name as it appears in the template's text: `{{1}}` is `"1"`, `{{order_id}}` is `"order_id"`. A missing slot is refused before anything is sent.
   */
  parameters?: {
    [k: string]: string | undefined;
  };
}
/**
 * Since 1.2. Quick-reply buttons or a list the customer picks from. The reply's
 * `content` is the question. Sent as a WhatsApp interactive message where the provider
 * has one, as buttons in the web chat widget, and as numbered text elsewhere; the
 * customer's choice comes back as a normal `user_message` whose message `metadata`
 * carries `interactive: {id, title}`.
 */
export interface Interactive {
  kind?: "buttons" | "list";
  /**
   * A header line.
   */
  title?: string | null;
  /**
   * A list's button label (WhatsApp: ≤ 20 chars).
   */
  button?: string | null;
  /**
   * @minItems 1
   * @maxItems 10
   */
  options: InteractiveOption[];
}
/**
 * One choice of an interactive message.
 */
export interface InteractiveOption {
  /**
   * Comes back in the customer's answer (`metadata.interactive.id`).
   */
  id: string;
  title: string;
  description?: string | null;
}
/**
 * Since 1.3. One to ten cards, shown side by side in the widget.
 */
export interface Cards {
  kind?: "cards";
  /**
   * @minItems 1
   * @maxItems 10
   */
  cards: Card[];
}
/**
 * One card: a title, optional subtitle, text, image and link, and buttons.
 */
export interface Card {
  title: string;
  subtitle?: string | null;
  text?: string | null;
  image_url?: string | null;
  url?: string | null;
  /**
   * @maxItems 5
   */
  buttons?: CardButton[];
}
/**
 * A button on a card: opens ``url``, or sends ``value`` (else its title) as a message.
 */
export interface CardButton {
  title: string;
  url?: string | null;
  value?: string | null;
}
/**
 * Since 1.3. One to ten options the visitor can click instead of typing.
 */
export interface QuickReplies {
  kind?: "quick_replies";
  /**
   * @minItems 1
   * @maxItems 10
   */
  options: QuickReply[];
}
/**
 * One option; clicking it sends ``value`` (else ``title``) as the visitor's message.
 */
export interface QuickReply {
  title: string;
  value?: string | null;
}
/**
 * Since 1.3. Named columns and rows of cells (text, numbers or null); every row has
 * exactly one cell per column.
 */
export interface Table {
  kind?: "table";
  /**
   * @minItems 1
   * @maxItems 50
   */
  columns: string[];
  /**
   * @maxItems 500
   */
  rows?: (string | number | null)[][];
  caption?: string | null;
}
/**
 * Since 1.3. A bar, line or pie chart: ``labels`` along one axis, one value per label in
 * each series.
 */
export interface Chart {
  kind?: "chart";
  chart: "bar" | "line" | "pie";
  title?: string | null;
  /**
   * @minItems 1
   * @maxItems 100
   */
  labels: string[];
  /**
   * @minItems 1
   * @maxItems 10
   */
  series: Series[];
}
/**
 * One named series: a value per label.
 */
export interface Series {
  name: string;
  /**
   * @maxItems 100
   */
  values: number[];
}
/**
 * Since 1.3. A kind this revision does not document: accepted as it is (every field
 * kept) and shown as text (its ``text``, ``title`` or ``fallback`` field, else its JSON).
 */
export interface OtherRichData {
  kind: string;
  [k: string]: unknown | undefined;
}
/**
 * One chunk of a streamed reply; ``stream_index`` counts from 0 with no gaps.
 */
export interface AgentStreaming {
  message_id: string;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "agent_streaming";
  conversation_id?: string | null;
  stream_index: number;
  content: string;
}
/**
 * End of a streamed reply; without ``content`` the reply is the chunks joined in order.
 */
export interface AgentComplete {
  message_id: string;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "agent_complete";
  conversation_id?: string | null;
  content?: string | null;
  attachments?: {
    [k: string]: unknown | undefined;
  }[];
  /**
   * Since 1.2. Send this stored template (WhatsApp).
   */
  template?: TemplateReply | null;
  /**
   * Since 1.2. Offer these choices with the reply.
   */
  interactive?: Interactive | null;
  /**
   * Since 1.3. Rich data (`cards`, `quick_replies`, `table`, `chart`, or any other kind) the web chat renders natively; every other channel receives a readable text fallback after `content`.
   */
  data?: (Cards | QuickReplies | Table | Chart | OtherRichData) | null;
}
/**
 * Show or hide the typing indicator in a conversation.
 */
export interface Typing {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "typing";
  conversation_id: string;
  on?: boolean;
}
/**
 * Hand the conversation to a human; ``content``, if any, is sent to the customer first;
 * ``summary`` (since 1.1) is a private note for the human who takes over.
 */
export interface Handoff {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "handoff";
  conversation_id?: string | null;
  reason?: string | null;
  content?: string | null;
  /**
   * Since 1.1. A note for the human who takes over (what the customer wants, what was tried), shown to the operator as a private note and never sent to the customer. At most 4000 characters; the bridge cuts a longer one. Without it the bridge may note the last messages instead (route policy).
   */
  summary?: string | null;
}
/**
 * The agent chose not to answer this turn.
 */
export interface NoReply {
  message_id: string;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "no_reply";
}
/**
 * The agent has received the turn with this ``seq``.
 */
export interface Ack {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "ack";
  seq: number;
}
/**
 * First frame of a dial-in connection: who the agent is and where to resume.
 */
export interface Hello {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "hello";
  agent_id: string;
  token?: string | null;
  protocol?: string;
  capabilities?: string[];
  resume_from?: number | null;
  /**
   * Since 1.3. The revision the agent speaks ("1.3"); absent: an agent from before negotiation, treated as 1.2.
   */
  version?: string | null;
  /**
   * Since 1.3. The optional features the agent handles: `agent_handoff`, `file_events`, `files`, `notices`, `progress`, `rich_data`, `sessions`, `status`. `capabilities` count as well. Unknown names are ignored.
   *
   * @maxItems 100
   */
  features?: string[];
}
/**
 * Since 1.3. Hand the conversation to another agent of the route (`to_agent` by id or
 * `to_role` by role, exactly one); the next turn goes to that agent. Ends the turn;
 * `content`, if any, is sent to the customer first, as the handing agent's message. Not
 * `handoff`, which hands the conversation to a human.
 */
export interface AgentHandoff {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "agent_handoff";
  conversation_id?: string | null;
  to_agent?: string | null;
  to_role?: string | null;
  reason?: string | null;
  content?: string | null;
}
/**
 * Since 1.3. A short line on what the agent is doing ("Searching your orders…"), shown
 * live where the channel can (the web chat) and cleared by the reply; never stored.
 * `message_id` names the turn; `conversation_id` is enough outside one.
 */
export interface StatusUpdate {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "status_update";
  conversation_id?: string | null;
  content: string;
}
/**
 * Since 1.3. How far a long task is (0.0 to 1.0), with an optional line; live only, like
 * `status_update`.
 */
export interface ProgressUpdate {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  type: "progress_update";
  conversation_id?: string | null;
  progress: number;
  content?: string | null;
}
/**
 * Since 1.3. The agent is working on a file the customer sent (`content`: what it does);
 * live only.
 */
export interface FileProcessing {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  conversation_id?: string | null;
  file_id: string;
  content?: string | null;
  type: "file_processing";
}
/**
 * Since 1.3. The agent finished with a file (`content`: a summary); live only.
 */
export interface FileComplete {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  conversation_id?: string | null;
  file_id: string;
  content?: string | null;
  type: "file_complete";
}
/**
 * Since 1.3. The agent could not use a file; `error` says why; live only.
 */
export interface FileError {
  message_id?: string | null;
  timestamp?: string | null;
  metadata?: {
    [k: string]: unknown | undefined;
  } | null;
  conversation_id?: string | null;
  file_id: string;
  content?: string | null;
  type: "file_error";
  error?: string | null;
}
