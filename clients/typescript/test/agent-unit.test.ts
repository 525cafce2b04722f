// The dial-in agent's protocol decisions, with the test playing the bridge on an in-memory
// socket: hello, resume, heartbeat, cancel, repeated turns, what a handler's result becomes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Agent, HelloRejected, reconnectDelay } from "../src/index.js";
import { FakeNetwork, type FakeSocket } from "./fake-socket.js";

function turn(n: number, content = `message ${n}`): object {
  return {
    type: "user_message",
    message_id: `t_${n}`,
    seq: n,
    conversation_id: "c_1",
    content,
  };
}

async function connected(
  agent: Agent,
  net: FakeNetwork,
  index: number,
  heartbeat = 20,
): Promise<FakeSocket> {
  const socket = await net.socket(index);
  socket.open();
  await socket.sentFrame("hello");
  socket.deliver({
    type: "hello_ok",
    agent_id: agent.agentId,
    heartbeat_interval: heartbeat,
    version: "1.3",
    features: ["status"],
  });
  return socket;
}

function newAgent(net: FakeNetwork): Agent {
  return new Agent("a1", {
    socket: net.factory,
    log: null,
    reconnectInitialDelayMs: 1,
    reconnectMaxDelayMs: 5,
  });
}

test("hello names the revision, the features and, after a reconnect, where to resume", async () => {
  const net = new FakeNetwork();
  const agent = newAgent(net).onUserMessage((t) => `echo ${t.content}`);
  agent.onSession(() => {});
  const running = agent.dialIn("http://bridge.test", "secret-token");
  const first = await net.socket(0);
  assert.equal(first.url, "ws://bridge.test/api/ws/agent");
  first.open();
  const hello = await first.sentFrame("hello");
  assert.equal(hello.version, "1.3");
  assert.equal(hello.token, "secret-token");
  assert.ok((hello.features as string[]).includes("sessions"));
  assert.ok((hello.features as string[]).includes("status"));
  assert.equal("resume_from" in hello, false);
  first.deliver({ type: "hello_ok", agent_id: "a1", heartbeat_interval: 20 });
  first.deliver(turn(7));
  assert.deepEqual(await first.sentFrame("ack"), { type: "ack", seq: 7 });
  await first.sentFrame("agent_message");
  first.close(1006, "lost");

  const second = await net.socket(1);
  second.open();
  const again = await second.sentFrame("hello");
  assert.equal(again.resume_from, 7);
  assert.equal(
    again.metadata && (again.metadata as { link_id: string }).link_id,
    (hello.metadata as { link_id: string }).link_id,
  );
  agent.stop();
  await running;
});

test("a turn sent again is answered from what was kept; the handler runs once", async () => {
  const net = new FakeNetwork();
  let runs = 0;
  const agent = newAgent(net).onUserMessage((t) => {
    runs += 1;
    return `echo ${t.content}`;
  });
  const running = agent.dialIn("ws://bridge.test/api/ws/agent", "tok");
  const socket = await connected(agent, net, 0);
  socket.deliver(turn(1, "hi"));
  await socket.sentFrame("agent_message");
  socket.deliver(turn(1, "hi"));
  await new Promise((resolve) => setImmediate(resolve));
  const answers = socket.sent.filter((f) => f.type === "agent_message");
  assert.equal(answers.length, 2);
  assert.deepEqual(answers[0], answers[1]);
  assert.equal(runs, 1);
  agent.stop();
  await running;
});

test("a cancelled turn aborts its signal and nothing is sent for it", async () => {
  const net = new FakeNetwork();
  let aborted: unknown = null;
  const agent = newAgent(net).onUserMessage(async (t) => {
    await new Promise<void>((resolve) => t.signal.addEventListener("abort", () => resolve()));
    aborted = t.cancelReason;
    await t.status("too late");
    return "too late";
  });
  const running = agent.dialIn("ws://bridge.test", "tok");
  const socket = await connected(agent, net, 0);
  socket.deliver(turn(1));
  await socket.sentFrame("ack");
  socket.deliver({
    type: "cancel",
    message_id: "t_1",
    conversation_id: "c_1",
    reason: "superseded",
  });
  socket.deliver(turn(2));
  await socket.sentFrame("ack", (f) => f.seq === 2);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(aborted, "superseded");
  assert.deepEqual(
    socket.sent.filter((f) => f.message_id === "t_1").map((f) => f.type),
    [],
  );
  agent.stop();
  await running;
});

test("what a handler returns becomes the turn's answer frame", async () => {
  const net = new FakeNetwork();
  const agent = newAgent(net).onUserMessage(async (t) => {
    if (t.content === "human") return { type: "handoff", reason: "billing", summary: "refund" };
    if (t.content === "billing") return { type: "agent_handoff", to_role: "billing" };
    if (t.content === "quiet") return undefined;
    if (t.content === "pieces") {
      return (async function* () {
        yield "a";
        yield "b";
      })();
    }
    throw new Error("boom");
  });
  const running = agent.dialIn("ws://bridge.test", "tok");
  const socket = await connected(agent, net, 0);
  const words = ["human", "billing", "quiet", "pieces", "fail"];
  words.forEach((word, i) => socket.deliver({ ...turn(i + 1, word), conversation_id: `c_${i}` }));
  const handoff = await socket.sentFrame("handoff");
  assert.deepEqual(handoff, {
    type: "handoff",
    message_id: "t_1",
    conversation_id: "c_0",
    reason: "billing",
    summary: "refund",
  });
  assert.equal((await socket.sentFrame("agent_handoff")).to_role, "billing");
  assert.deepEqual(await socket.sentFrame("no_reply"), { type: "no_reply", message_id: "t_3" });
  const chunks = socket.sent.filter((f) => f.type === "agent_streaming" && f.message_id === "t_4");
  const complete = await socket.sentFrame("agent_complete");
  assert.equal(complete.content, "ab");
  assert.deepEqual(
    socket.sent.filter((f) => f.type === "agent_streaming").map((f) => [f.stream_index, f.content]),
    [
      [0, "a"],
      [1, "b"],
    ],
  );
  assert.ok(chunks.length <= 2);
  const failed = await socket.sentFrame("error_message");
  assert.equal(failed.error_code, "handler_error");
  assert.deepEqual(failed.error_details, { message: "boom" });
  agent.stop();
  await running;
});

test("pings are answered; a bridge silent for three heartbeats is dropped and dialed again", async () => {
  const net = new FakeNetwork();
  const agent = newAgent(net).onUserMessage(() => "x");
  const running = agent.dialIn("ws://bridge.test", "tok");
  const socket = await connected(agent, net, 0, 0.05);
  socket.deliver({ type: "ping" });
  await socket.sentFrame("pong");
  await socket.sentFrame("ping"); // the agent's own heartbeat
  // the test says nothing more: the agent gives the connection up and dials again
  await net.socket(1);
  assert.equal(socket.closed?.reason, "no heartbeat");
  agent.stop();
  await running;
});

test("hello_error ends dialIn with HelloRejected", async () => {
  const net = new FakeNetwork();
  const agent = newAgent(net).onUserMessage(() => "x");
  const running = agent.dialIn("ws://bridge.test", "tok");
  const socket = await net.socket(0);
  socket.open();
  await socket.sentFrame("hello");
  socket.deliver({ type: "hello_error", error_code: "unauthorized", message: "bad token" });
  await assert.rejects(running, HelloRejected);
  assert.equal(net.sockets.length, 1);
});

test("status and progress are cut and clamped to what the bridge takes", async () => {
  const net = new FakeNetwork();
  const agent = newAgent(net).onUserMessage(async (t) => {
    await t.status("x".repeat(500));
    await t.progress(7);
    await t.progress(-1, "y".repeat(300));
    return "done";
  });
  const running = agent.dialIn("ws://bridge.test", "tok");
  const socket = await connected(agent, net, 0);
  socket.deliver(turn(1));
  await socket.sentFrame("agent_message");
  const status = await socket.sentFrame("status_update");
  assert.equal((status.content as string).length, 200);
  const progress = socket.sent.filter((f) => f.type === "progress_update");
  assert.deepEqual(
    progress.map((f) => f.progress),
    [1, 0],
  );
  assert.equal((progress[1]?.content as string).length, 200);
  agent.stop();
  await running;
});

test("reconnect delays grow exponentially, with full jitter, up to the maximum", () => {
  assert.equal(
    reconnectDelay(0, 500, 30_000, () => 1),
    500,
  );
  assert.equal(
    reconnectDelay(3, 500, 30_000, () => 1),
    4000,
  );
  assert.equal(
    reconnectDelay(20, 500, 30_000, () => 1),
    30_000,
  );
  assert.equal(
    reconnectDelay(5, 500, 30_000, () => 0),
    0,
  );
  assert.equal(
    reconnectDelay(2, 500, 30_000, () => 0.5),
    1000,
  );
});

test("a turn shows what the bridge said of it: files, the addressed agent, the trace context", async () => {
  const net = new FakeNetwork();
  const seen: Array<Record<string, unknown>> = [];
  const agent = newAgent(net).onUserMessage((t) => {
    seen.push({ files: t.files.map((f) => f.file_name), role: t.role, trace: t.traceparent });
    return "ok";
  });
  const running = agent.dialIn("wss://bridge.test/", "tok");
  const socket = await connected(agent, net, 0);
  assert.equal(socket.url, "wss://bridge.test/api/ws/agent");
  const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  socket.deliver({
    ...turn(1),
    role: "billing",
    traceparent,
    files: [
      { file_id: "md_1", file_name: "a.pdf", file_url: "u", mime: "application/pdf", size: 1 },
    ],
  });
  await socket.sentFrame("agent_message");
  assert.deepEqual(seen, [{ files: ["a.pdf"], role: "billing", trace: traceparent }]);
  agent.stop();
  await running;
});

test("a connection that fails says why in one line and is tried again", async () => {
  const net = new FakeNetwork();
  const lines: string[] = [];
  const agent = new Agent("a1", {
    socket: net.factory,
    log: (line) => lines.push(line),
    reconnectInitialDelayMs: 1,
    reconnectMaxDelayMs: 2,
  });
  const running = agent.dialIn("ws://bridge.test/api/ws/agnet", "tok");
  const first = await net.socket(0);
  first.onerror?.({ message: "Unexpected server response: 404" });
  first.close(1006, "");
  await net.socket(1);
  assert.deepEqual(lines, [
    "cannot connect to ws://bridge.test/api/ws/agnet: Unexpected server response: 404 (is it the bridge's /api/ws/agent?); retrying",
  ]);
  agent.stop();
  await running;
});
