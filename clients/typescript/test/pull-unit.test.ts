// The pull loop's decisions with the test playing the bridge's pull API: a turn offered again
// while its handler works is answered once, under its newest lease; errors are retried.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Agent, PullRefused } from "../src/index.js";

interface Call {
  url: string;
  method: string;
  body: Record<string, unknown> | null;
}

/** A fake bridge: each poll answers the next scripted response (then empty lists). */
function bridge(polls: Array<() => Response>): { fetch: typeof fetch; calls: Call[] } {
  const calls: Call[] = [];
  const fake = async (url: unknown, init?: RequestInit): Promise<Response> => {
    const method = init?.method ?? "GET";
    const body = init?.body ? (JSON.parse(String(init.body)) as Record<string, unknown>) : null;
    calls.push({ url: String(url), method, body });
    if (method === "POST") return new Response(JSON.stringify({ status: "ok" }));
    const next = polls.shift();
    if (next) return next();
    await new Promise<void>((resolve) => init?.signal?.addEventListener("abort", () => resolve()));
    throw new Error("aborted");
  };
  return { fetch: fake as typeof fetch, calls };
}

const offer = (lease: string): Response =>
  new Response(
    JSON.stringify({
      turns: [
        {
          lease_id: lease,
          lease_expires_at: "",
          turn: { type: "user_message", message_id: "t_5", conversation_id: "c_1", content: "hi" },
        },
      ],
    }),
  );

test("a turn offered again while its handler works is answered once, under the newest lease", async () => {
  let release = (): void => {};
  const working = new Promise<void>((resolve) => (release = resolve));
  let runs = 0;
  const { fetch, calls } = bridge([
    () => offer("lease-1"),
    () => offer("lease-2"), // the lease ran out: the same turn again
    () => {
      release(); // the handler answers once the second offer has been taken in
      return new Response(JSON.stringify({ turns: [] }));
    },
  ]);
  const agent = new Agent("p1", { fetch, log: null }).onUserMessage(async (turn) => {
    runs += 1;
    await working;
    return `echo ${turn.content}`;
  });
  const running = agent.pull("http://bridge.test/", "tok", { waitSeconds: 1 });
  const deadline = Date.now() + 5000;
  while (!calls.some((c) => c.method === "POST") && Date.now() < deadline) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  agent.stop();
  await running;
  const posts = calls.filter((c) => c.method === "POST");
  assert.equal(runs, 1);
  assert.equal(posts.length, 1);
  assert.equal(posts[0]?.url, "http://bridge.test/api/agent/turns/t_5/reply?lease=lease-2");
  assert.deepEqual(posts[0]?.body, {
    type: "agent_message",
    message_id: "t_5",
    conversation_id: "c_1",
    content: "echo hi",
  });
  assert.equal(calls[0]?.url, "http://bridge.test/api/agent/turns?wait=1&limit=10");
});

test("a 503 is retried; a 409 (not an http-pull agent) stops the loop", async () => {
  const { fetch, calls } = bridge([
    () => new Response("{}", { status: 503 }),
    () =>
      new Response(JSON.stringify({ error: { code: "not_pull_agent", message: "ws-dial-in" } }), {
        status: 409,
      }),
  ]);
  const agent = new Agent("p1", {
    fetch,
    log: null,
    reconnectInitialDelayMs: 1,
    reconnectMaxDelayMs: 2,
  }).onUserMessage(() => "x");
  await assert.rejects(agent.pull("http://bridge.test", "tok"), (error) => {
    assert.ok(error instanceof PullRefused);
    assert.equal(error.status, 409);
    assert.match(error.message, /ws-dial-in/);
    return true;
  });
  assert.equal(calls.length, 2);
});
