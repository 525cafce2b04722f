// @chatbridge/client: the agent protocol's message types (generated from the bridge's JSON
// Schema), an agent client (`Agent`: dial-in WebSocket or http pull) and a front-end web chat
// client (`ChatClient`).
export type * from "./types.js";
export {
  Agent,
  HelloRejected,
  PullRefused,
  PROTOCOL,
  REVISION,
  BASE_FEATURES,
  agentSocketUrl,
  type AgentOptions,
  type DialInOptions,
  type PullOptions,
  type PulledTurn,
  type SessionFrame as AgentSessionFrame,
  type NoticeFrame,
} from "./agent.js";
export { Turn, turnKey, type Reply, type AnswerFrame, type TurnHandler } from "./turn.js";
export { ChatClient, ChatError, type ChatClientOptions, type ChatEvents } from "./chat.js";
export type * from "./chat-types.js";
export { reconnectDelay } from "./backoff.js";
export type { SocketFactory, SocketLike } from "./socket.js";
