// The web chat widget's live protocol (`WS /api/ws/chat/{session_id}`), as docs/webchat.md
// describes it. These frames are the widget's, not the agent protocol's.

/** A message of the conversation, as the history and the live socket show it. */
export interface ChatMessage {
  id: string;
  /** `user` (the visitor), `agent`, `human` (an operator) or `system`. */
  role: "user" | "agent" | "human" | "system" | string;
  text: string;
  created_at: string;
  client_message_id?: string;
  /** The agent turn this message answers (an agent's reply). */
  turn_id?: string;
  attachments?: Array<{
    url: string;
    mime?: string;
    size?: number;
    name?: string;
    media_id?: string;
  }>;
  /** `system` or `warning` for a notice. */
  notice?: string;
  data?: { kind: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** `POST /api/webchat/sessions`'s answer. */
export interface ChatSession {
  session_id: string;
  uid: string;
  inbox_id: number;
  conversation_id: string | null;
  created: boolean;
  idle_timeout: number;
  uploads?: { enabled: boolean; max_bytes: number; types: string[] };
}

/** `POST /api/webchat/upload`'s answer: name the `file_id` in a message's `files`. */
export interface UploadedFile {
  file_id: string;
  file_name: string;
  mime: string;
  size: number;
}

export interface SessionFrame {
  type: "session";
  session_id: string;
  uid: string;
  conversation_id: string | null;
}
export interface HistoryFrame {
  type: "history";
  messages: ChatMessage[];
  cursor: string | null;
}
export interface AckFrame {
  type: "ack";
  client_message_id: string | null;
  message_id: string | null;
  status: "accepted" | "duplicate" | string;
}
export interface MessageFrame {
  type: "message";
  message: ChatMessage;
}
export interface StreamingFrame {
  type: "agent_streaming";
  turn_id: string;
  stream_index: number;
  content: string;
}
export interface TypingFrame {
  type: "typing";
  on: boolean;
}
export interface SystemFrame {
  type: "system";
  text: string;
}
export interface StatusFrame {
  type: "status_update";
  turn_id: string;
  content: string;
}
export interface ProgressFrame {
  type: "progress_update";
  turn_id: string;
  progress: number;
  content?: string;
}
export interface StatusClearFrame {
  type: "status_clear";
  turn_id: string;
}
export interface FileEventFrame {
  type: "file_processing" | "file_complete" | "file_error";
  file_id: string;
  content?: string;
  error?: string;
}
export interface SessionLifecycleFrame {
  type: "session_created" | "session_updated" | "session_expired";
  session_id: string;
  uid?: string;
  conversation_id?: string;
  reason?: string;
  data: Record<string, unknown>;
}
export interface ErrorFrame {
  type: "error";
  code: string;
  message: string;
  client_message_id?: string | null;
  retry_after?: number;
}
export interface PingFrame {
  type: "ping";
}
export interface PongFrame {
  type: "pong";
}

/** Every frame the bridge sends a widget. */
export type ChatServerFrame =
  | SessionFrame
  | HistoryFrame
  | AckFrame
  | MessageFrame
  | StreamingFrame
  | TypingFrame
  | SystemFrame
  | StatusFrame
  | ProgressFrame
  | StatusClearFrame
  | FileEventFrame
  | SessionLifecycleFrame
  | ErrorFrame
  | PingFrame
  | PongFrame;

/** Every frame a widget sends the bridge. */
export type ChatClientFrame =
  | { type: "resume"; after: string | null }
  | {
      type: "user_message";
      client_message_id: string;
      content: string;
      files?: string[];
      choice_id?: string;
      agent?: string;
      role?: string;
    }
  | PingFrame
  | PongFrame;
