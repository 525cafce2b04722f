// http-webhook: the bridge POSTs each turn (the `user_message` plus `lease_id` and
// `reply_url`), signed `X-Chatbridge-Signature: sha256=<hex HMAC-SHA256 of the body>`; the
// agent answers in the response with a JSON list of frames — live ones first, the answer last.
// Node.js only (node:http, node:crypto).
import { createHmac, timingSafeEqual } from "node:crypto";
import { type IncomingMessage, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { SendFrame } from "./turn.js";
import type { AgentToBridge, Cancel, UserMessage } from "./types.js";

export const SIGNATURE_HEADER = "x-chatbridge-signature";
/** Bodies larger than this are refused (413) before they are read whole. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** The `X-Chatbridge-Signature` value of `body` (the exact bytes sent). */
export function sign(secret: string, body: Uint8Array | string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Whether `header` is the signature of the raw `body`, compared in constant time. */
export function verify(secret: string, body: Uint8Array, header: string | undefined): boolean {
  if (header === undefined) return false;
  const expected = Buffer.from(sign(secret, body));
  const given = Buffer.from(header.trim());
  return expected.length === given.length && timingSafeEqual(expected, given);
}

export interface WebhookHost {
  secret: string;
  log: (line: string) => void;
  /** Run the turn with `send` for its frames; `busy` when it is already running. */
  answer: (frame: UserMessage, send: SendFrame) => Promise<"answered" | "busy">;
  cancel: (frame: Cancel) => void;
}

/** Listen on `host:port`; resolves with the bound port and the function that closes it. */
export async function listenForTurns(
  host: WebhookHost,
  port: number,
  address: string,
): Promise<{ port: number; close: () => void }> {
  const server = createServer((request, response) => {
    const reply = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      response.writeHead(status, { "Content-Type": "application/json", ...headers });
      response.end(body === undefined ? "" : JSON.stringify(body));
    };
    const refuse = (status: number, code: string, message: string): void =>
      reply(status, { error: { code, message } });
    if (request.method !== "POST") {
      refuse(405, "method_not_allowed", "turns are POSTed");
      return;
    }
    readBody(request).then(
      async (body) => {
        if (body === null) {
          refuse(413, "too_large", `bodies are limited to ${MAX_BODY_BYTES} bytes`);
          return;
        }
        if (!verify(host.secret, body, header(request, SIGNATURE_HEADER))) {
          host.log("refused a webhook request with a bad or missing signature");
          refuse(401, "bad_signature", "X-Chatbridge-Signature does not match the body");
          return;
        }
        let frame: { type?: unknown };
        try {
          frame = JSON.parse(body.toString("utf8")) as { type?: unknown };
        } catch {
          refuse(400, "invalid_json", "the body is not JSON");
          return;
        }
        if (frame.type === "cancel") {
          host.cancel(frame as Cancel);
          reply(200, []);
          return;
        }
        if (frame.type !== "user_message") {
          reply(200, []); // a conversation_event, or a frame this agent does not read
          return;
        }
        const frames: AgentToBridge[] = [];
        const state = await host.answer(frame as UserMessage, async (out) => {
          frames.push(out);
          return true;
        });
        if (state === "busy") {
          // the same turn is still being worked on: the bridge asks again, then gets its answer
          reply(
            503,
            { error: { code: "busy", message: "the turn is still running" } },
            {
              "Retry-After": "1",
            },
          );
          return;
        }
        reply(200, frames);
      },
      (error: unknown) => refuse(400, "bad_request", String(error)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
    server.listen(port, address);
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => {
      server.close();
      server.closeAllConnections();
    },
  };
}

function header(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The raw body, or null when it is over the limit. */
async function readBody(request: IncomingMessage): Promise<Buffer | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return null;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
