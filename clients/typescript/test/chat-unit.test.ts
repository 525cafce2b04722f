// The chat client's connection decisions, with the test playing the bridge: resume after the
// last message seen, the queue resent until acknowledged, a session reopened after 4410,
// the heartbeat.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ChatClient } from "../src/index.js";
import { FakeNetwork, type FakeSocket } from "./fake-socket.js";

/** A fetch that answers `POST /api/webchat/sessions` and counts the calls. */
function sessions(): { fetch: typeof fetch; calls: Array<Record<string, unknown>> } {
  const calls: Array<Record<string, unknown>> = [];
  const fake = async (_url: unknown, init?: RequestInit): Promise<Response> => {
    const body = JSON.parse(String(init?.body)) as Record<string, unknown>;
    calls.push(body);
    const session = {
      session_id: body.session_id ?? "ws_1",
      uid: `u${calls.length}`,
      inbox_id: 1,
      conversation_id: null,
      created: calls.length > 1,
      idle_timeout: 1800,
    };
    return new Response(JSON.stringify(session), { status: 200 });
  };
  return { fetch: fake as typeof fetch, calls };
}

async function live(net: FakeNetwork, index: number): Promise<FakeSocket> {
  const socket = await net.socket(index);
  socket.open();
  socket.deliver({ type: "session", session_id: "ws_1", uid: "u1", conversation_id: null });
  return socket;
}

function client(net: FakeNetwork, http: typeof fetch, heartbeatSeconds = 20): ChatClient {
  return new ChatClient({
    bridge: "https://bridge.test/",
    inboxId: 1,
    socket: net.factory,
    fetch: http,
    heartbeatSeconds,
    reconnectInitialDelayMs: 1,
    reconnectMaxDelayMs: 5,
  });
}

test("after a reconnect the client resumes after the last message and resends what was not acked", async () => {
  const net = new FakeNetwork();
  const { fetch } = sessions();
  const chat = client(net, fetch);
  const connecting = chat.connect();
  const first = await live(net, 0);
  await connecting;
  assert.equal(first.url, "wss://bridge.test/api/ws/chat/ws_1");
  assert.deepEqual(await first.sentFrame("resume"), { type: "resume", after: null });
  const acked = chat.send("one");
  const sent = await first.sentFrame("user_message");
  first.deliver({
    type: "message",
    message: { id: "m_1", role: "user", text: "one", created_at: "" },
  });
  first.close(1006, "lost"); // before the ack came

  const second = await live(net, 1);
  assert.deepEqual(await second.sentFrame("resume"), { type: "resume", after: "m_1" });
  const again = await second.sentFrame("user_message");
  assert.equal(again.client_message_id, sent.client_message_id);
  second.deliver({
    type: "ack",
    client_message_id: sent.client_message_id,
    message_id: "m_1",
    status: "duplicate",
  });
  assert.equal((await acked).status, "duplicate");
  assert.equal(chat.queued, 0);
  await chat.close();
});

test("a socket closed as expired (4410) opens the session again before reconnecting", async () => {
  const net = new FakeNetwork();
  const { fetch, calls } = sessions();
  const chat = client(net, fetch);
  const connecting = chat.connect();
  const first = await live(net, 0);
  await connecting;
  first.close(4410, "session expired");
  await live(net, 1);
  assert.equal(calls.length, 2);
  assert.equal(calls[1]?.session_id, "ws_1");
  assert.equal(chat.session?.uid, "u2");
  await chat.close();
});

test("the client pings, answers pings, and drops a socket silent for three heartbeats", async () => {
  const net = new FakeNetwork();
  const { fetch } = sessions();
  const chat = client(net, fetch, 0.05);
  const connecting = chat.connect();
  const first = await live(net, 0);
  await connecting;
  first.deliver({ type: "ping" });
  await first.sentFrame("pong");
  await first.sentFrame("ping");
  await net.socket(1); // nothing more heard: dialed again
  assert.equal(first.closed?.reason, "no heartbeat");
  await chat.close();
});

test("subscriptions are typed by frame and can be dropped", async () => {
  const net = new FakeNetwork();
  const { fetch } = sessions();
  const chat = client(net, fetch);
  const connecting = chat.connect();
  const socket = await live(net, 0);
  await connecting;
  const typing: boolean[] = [];
  const off = chat.on("typing", (frame) => typing.push(frame.on));
  socket.deliver({ type: "typing", on: true });
  off();
  socket.deliver({ type: "typing", on: false });
  socket.deliver({ type: "agent_streaming", turn_id: "t_1", stream_index: 1, content: "b" });
  socket.deliver({ type: "agent_streaming", turn_id: "t_1", stream_index: 0, content: "a" });
  assert.deepEqual(typing, [true]);
  assert.equal(chat.streamedText("t_1"), "ab");
  await chat.close();
});

test("the client long-polls while sockets fail and goes back to the socket once one opens", async () => {
  const net = new FakeNetwork();
  const polls: string[] = [];
  const fake = async (url: unknown, init?: RequestInit): Promise<Response> => {
    const target = String(url);
    if (init?.method === "POST") {
      return new Response(
        JSON.stringify({ session_id: "ws_1", uid: "u1", inbox_id: 1, conversation_id: null }),
      );
    }
    polls.push(target);
    if (target.includes("wait=0")) {
      const message = { id: "m_1", role: "agent", text: "hello", created_at: "" };
      return new Response(JSON.stringify({ messages: [message], cursor: "m_1", typing: false }));
    }
    // a held poll: answered only by its abort
    await new Promise<void>((resolve) => init?.signal?.addEventListener("abort", () => resolve()));
    throw new Error("aborted");
  };
  const chat = new ChatClient({
    bridge: "http://bridge.test",
    inboxId: 1,
    socket: net.factory,
    fetch: fake as typeof fetch,
    reconnectInitialDelayMs: 1,
    reconnectMaxDelayMs: 2,
    socketRetryWhilePollingSeconds: 0.01,
  });
  const messages: string[] = [];
  chat.on("message", (f) => messages.push(f.message.text));
  const connecting = chat.connect();
  for (const n of [0, 1, 2]) (await net.socket(n)).close(1006, "blocked");
  await connecting;
  assert.equal(chat.transport, "longpoll");
  assert.deepEqual(messages, ["hello"]);
  await new Promise<void>((resolve) => {
    const check = (): void => (polls.length >= 2 ? resolve() : void setImmediate(check));
    check();
  });
  assert.match(polls[1] ?? "", /wait=25&after=m_1$/);

  const socket = await live(net, 3);
  assert.equal(chat.transport, "websocket");
  assert.deepEqual(await socket.sentFrame("resume"), { type: "resume", after: "m_1" });
  await chat.close();
});
