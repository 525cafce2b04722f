// The front-end chat client against a real bridge: a visitor's message over the widget's
// socket, the agent's reply streamed back; messages sent while disconnected are queued.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import WebSocket from "ws";
import { Agent, ChatClient, ChatError, type StreamingFrame } from "../src/index.js";
import { type Bridge, startBridge } from "./harness.js";

const TOKEN = "ts-chat-agent-token-0123456789";

let bridge: Bridge;
let agent: Agent;
let agentRunning: Promise<void>;
let releaseSecondPiece = (): void => {};

before(async () => {
  bridge = await startBridge([
    { inbox: 1, agentId: "ts-chat-agent", transport: "ws-dial-in", token: TOKEN },
  ]);
  agent = new Agent("ts-chat-agent", { log: null, reconnectInitialDelayMs: 20 });
  agent.onUserMessage(async (turn) => {
    if (turn.files.length > 0) {
      const file = turn.files[0]!;
      await turn.fileProcessing(file.file_id, `Reading ${file.file_name}`);
      const text = await (await fetch(file.file_url)).text();
      return `${file.file_name} (${file.mime}, ${file.size} bytes) says: ${text}`;
    }
    if (turn.content !== "stream please") return `Echo: ${turn.content}`;
    await turn.stream("Hel");
    // the second piece waits for the test: the first is seen on its own before it
    await new Promise<void>((resolve) => {
      releaseSecondPiece = resolve;
    });
    await turn.stream("lo!");
  });
  agentRunning = agent.dialIn(bridge.url, TOKEN);
  await agent.waitConnected();
});

after(async () => {
  agent?.stop();
  await agentRunning;
  await bridge?.stop();
});

function chatClient(sessionId?: string): ChatClient {
  return new ChatClient({
    bridge: bridge.url,
    inboxId: 1,
    sessionId,
    socket: (url) => new WebSocket(url),
    reconnectInitialDelayMs: 20,
    reconnectMaxDelayMs: 200,
  });
}

test("a message sent over the widget socket gets the agent's reply streamed back", async () => {
  const chat = chatClient();
  const session = await chat.connect();
  assert.ok(session.session_id.startsWith("ws_"));
  const pieces: StreamingFrame[] = [];
  chat.on("agent_streaming", (frame) => pieces.push(frame));
  const firstPiece = chat.next("agent_streaming");
  const reply = chat.next("message", (f) => f.message.role === "agent");

  const ack = await chat.send("stream please");
  assert.equal(ack.status, "accepted");
  assert.ok(ack.message_id);

  const first = await firstPiece;
  assert.equal(first.content, "Hel");
  assert.equal(chat.streamedText(first.turn_id), "Hel");
  releaseSecondPiece();
  const final = await reply;
  assert.equal(final.message.text, "Hello!");
  assert.equal(final.message.turn_id, first.turn_id);
  assert.deepEqual(
    pieces.map((p) => [p.stream_index, p.content]),
    [
      [0, "Hel"],
      [1, "lo!"],
    ],
  );
  await chat.close();
});

test("a message sent while the socket is down is queued and goes once it is back", async () => {
  const chat = chatClient();
  await chat.connect();
  const lost = chat.next("connection", (e) => !e.connected);
  chat.disconnect();
  await lost;
  assert.equal(chat.connected, false);
  const reply = chat.next("message", (f) => f.message.role === "agent");
  const acked = chat.send("sent while offline");
  assert.equal(chat.queued, 1);
  const ack = await acked;
  assert.equal(ack.status, "accepted");
  assert.equal(chat.queued, 0);
  assert.equal((await reply).message.text, "Echo: sent while offline");
  await chat.close();
});

test("a returning visitor resumes the session and gets its history", async () => {
  const first = chatClient();
  const session = await first.connect();
  const reply = first.next("message", (f) => f.message.role === "agent");
  await first.send("remember me");
  await reply;
  await first.close();

  const again = chatClient(session.session_id);
  const history = again.next("history");
  const resumed = await again.connect();
  assert.equal(resumed.session_id, session.session_id);
  assert.equal(resumed.created, false);
  const texts = (await history).messages.map((m) => `${m.role}: ${m.text}`);
  assert.deepEqual(texts, ["user: remember me", "agent: Echo: remember me"]);
  await again.close();
});

test("a refused message rejects its promise with the bridge's reason", async () => {
  const chat = chatClient();
  await chat.connect();
  await assert.rejects(chat.send("x".repeat(10_001)), (error) => {
    assert.ok(error instanceof ChatError);
    assert.match(error.message, /10000|long|characters/);
    return true;
  });
  await chat.close();
});

test("opening a session for an inbox with no route is refused with the bridge's reason", async () => {
  const chat = new ChatClient({ bridge: bridge.url, inboxId: 99, socket: (u) => new WebSocket(u) });
  await assert.rejects(chat.connect(), (error) => {
    assert.ok(error instanceof ChatError);
    assert.equal(error.code, "unknown_inbox");
    return true;
  });
});

test("a file uploaded and sent with a message reaches the agent, which reads its bytes", async () => {
  const chat = chatClient();
  await chat.connect();
  const uploaded = await chat.upload(
    new Blob(["tea, not coffee"], { type: "text/plain" }),
    "order.txt",
  );
  assert.equal(uploaded.file_name, "order.txt");
  assert.equal(uploaded.mime, "text/plain");
  const fileEvent = chat.next("file_processing");
  const reply = chat.next("message", (f) => f.message.role === "agent");
  await chat.send("my order", { files: [uploaded.file_id] });
  assert.equal((await fileEvent).file_id, uploaded.file_id);
  assert.equal(
    (await reply).message.text,
    "order.txt (text/plain, 15 bytes) says: tea, not coffee",
  );
  await chat.close();
});

test("a file of a type the bridge does not take is refused with its reason", async () => {
  const chat = chatClient();
  await chat.connect();
  const exe = new Blob([new Uint8Array([0x4d, 0x5a, 0x90, 0x00])], {
    type: "application/x-msdownload",
  });
  await assert.rejects(chat.upload(exe, "setup.exe"), (error) => {
    assert.ok(error instanceof ChatError);
    assert.equal(error.code, "upload_type_not_allowed");
    return true;
  });
  await chat.close();
});

test("where WebSockets are blocked the client long-polls: it sends, and gets the reply", async () => {
  let refused = 0;
  const chat = new ChatClient({
    bridge: bridge.url,
    inboxId: 1,
    socket: () => {
      refused += 1;
      throw new Error("blocked by a proxy");
    },
    reconnectInitialDelayMs: 1,
    reconnectMaxDelayMs: 5,
    pollWaitSeconds: 2,
  });
  await chat.connect();
  assert.equal(chat.transport, "longpoll");
  assert.equal(refused, 3, "three socket opens failed before polling");
  const reply = chat.next("message", (f) => f.message.role === "agent");
  const ack = await chat.send("over plain HTTP");
  assert.equal(ack.status, "accepted");
  assert.equal((await reply).message.text, "Echo: over plain HTTP");
  await chat.close();
});
