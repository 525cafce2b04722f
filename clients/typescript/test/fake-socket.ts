// An in-memory WebSocket for the clients' unit tests: the test plays the bridge.
import type { SocketFactory, SocketLike } from "../src/socket.js";

export class FakeSocket implements SocketLike {
  readyState = 0;
  readonly sent: Array<Record<string, unknown>> = [];
  closed: { code?: number; reason?: string } | null = null;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  private waiters: Array<() => void> = [];

  constructor(readonly url: string) {}

  send(data: string): void {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
    for (const wake of this.waiters.splice(0)) wake();
  }

  close(code?: number, reason?: string): void {
    if (this.readyState === 3) return;
    this.closed = { code, reason };
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? "" }));
  }

  /** The bridge accepts the upgrade. */
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }

  /** The bridge sends a frame. */
  deliver(frame: object): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** The first frame sent of `type` that `match` accepts, waiting for it. */
  async sentFrame(
    type: string,
    match: (frame: Record<string, unknown>) => boolean = () => true,
  ): Promise<Record<string, unknown>> {
    for (;;) {
      const found = this.sent.find((f) => f.type === type && match(f));
      if (found) return found;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
}

/** A factory handing out FakeSockets; `next()` resolves with the next one opened. */
export class FakeNetwork {
  readonly sockets: FakeSocket[] = [];
  private waiters: Array<(socket: FakeSocket) => void> = [];

  readonly factory: SocketFactory = (url) => {
    const socket = new FakeSocket(url);
    this.sockets.push(socket);
    const wake = this.waiters.shift();
    wake?.(socket);
    return socket;
  };

  /** The socket opened after `count` others (already or once it is). */
  socket(index: number): Promise<FakeSocket> {
    const ready = this.sockets[index];
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => {
      const check = (socket: FakeSocket): void => {
        if (this.sockets.indexOf(socket) === index) resolve(socket);
        else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }
}
