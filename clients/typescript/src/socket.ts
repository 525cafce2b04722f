// The few WebSocket members the clients use: the WHATWG WebSocket of browsers (and of Node
// 22+) has them, and so has the `ws` package's on Node 20.

/** A handler type checked bivariantly, so both the DOM's and `ws`'s event types fit. */
type Handler<E> = { bivarianceHack(event: E): void }["bivarianceHack"];

/** What a client needs of a WebSocket. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: Handler<unknown> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
}

/** Opens a WebSocket to a URL. */
export type SocketFactory = (url: string) => SocketLike;

export const OPEN = 1;

/** The platform's own WebSocket, if it has one (browsers, Node 22+). */
export function globalSocket(): SocketFactory | undefined {
  const ctor = (globalThis as { WebSocket?: new (url: string) => SocketLike }).WebSocket;
  return ctor === undefined ? undefined : (url) => new ctor(url);
}

/** The text of a message event, whatever the WebSocket implementation delivered. */
export function frameText(data: unknown): string {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data);
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data);
  if (Array.isArray(data)) {
    return data.map((part) => frameText(part)).join("");
  }
  return String(data);
}
