// The agent client against a real bridge: a TypeScript agent answers web chat visitors, dialed
// in over a WebSocket and by http pull.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  Agent,
  type AgentSessionFrame,
  HelloRejected,
  PullRefused,
  type Turn,
} from "../src/index.js";
import { type Bridge, Visitor, post, startBridge } from "./harness.js";

const DIAL_TOKEN = "ts-dial-in-token-0123456789";
const PULL_TOKEN = "ts-pull-token-0123456789ab";

let bridge: Bridge;

before(async () => {
  bridge = await startBridge([
    { inbox: 1, agentId: "ts-agent", transport: "ws-dial-in", token: DIAL_TOKEN },
    { inbox: 2, agentId: "ts-pull", transport: "http-pull", token: PULL_TOKEN },
  ]);
});

after(async () => {
  await bridge?.stop();
});

/** A gate the test opens (no sleeps). */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = (): void => {};
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

function dialAgent(): Agent {
  return new Agent("ts-agent", {
    log: null,
    reconnectInitialDelayMs: 20,
    reconnectMaxDelayMs: 200,
  });
}

test("an agent dialing in answers a web chat message with status, progress and a stream", async () => {
  const agent = dialAgent();
  const turns: Turn[] = [];
  agent.onUserMessage(async (turn) => {
    turns.push(turn);
    assert.equal(await turn.status("Looking it up…"), true);
    assert.equal(await turn.progress(0.5, "Half way"), true);
    await turn.stream("You said: ");
    await turn.stream(turn.content);
  });
  const running = agent.dialIn(bridge.url, DIAL_TOKEN);
  await agent.waitConnected();
  const visitor = new Visitor(bridge.url, 1);
  await visitor.say("hello from the web");
  assert.deepEqual(await visitor.replies(1), ["You said: hello from the web"]);
  assert.equal(turns.length, 1);
  assert.equal(turns[0]?.channel, "webchat");
  assert.ok(turns[0]?.conversationId.startsWith("c_"));
  assert.equal(typeof turns[0]?.frame.seq, "number");
  assert.equal(agent.lastSeq, turns[0]?.frame.seq);
  agent.stop();
  await running;
  assert.equal(agent.connected, false);
});

test("an answer made while the connection was down reaches the bridge after the reconnect", async () => {
  const agent = dialAgent();
  const started = gate();
  const release = gate();
  let runs = 0;
  agent.onUserMessage(async (turn) => {
    runs += 1;
    started.open();
    await release.wait;
    return `Answered: ${turn.content}`;
  });
  const running = agent.dialIn(bridge.url, DIAL_TOKEN);
  await agent.waitConnected();
  const visitor = new Visitor(bridge.url, 1);
  await visitor.say("are you there?");
  await started.wait;
  const changes: boolean[] = [];
  const dropped = gate();
  agent.onConnectionChange((connected) => {
    changes.push(connected);
    if (!connected) dropped.open();
  });
  agent.disconnect();
  await dropped.wait;
  release.open(); // answered while disconnected: it waits for the next connection
  assert.deepEqual(await visitor.replies(1), ["Answered: are you there?"]);
  assert.equal(agent.connected, true);
  assert.deepEqual(changes, [false, true]);
  assert.equal(runs, 1, "the turn the bridge sent again after the reconnect ran once");
  await visitor.say("and now?");
  assert.deepEqual(await visitor.replies(2), ["Answered: are you there?", "Answered: and now?"]);
  agent.stop();
  await running;
});

test("a refused token ends dialIn with HelloRejected instead of retrying", async () => {
  const agent = dialAgent();
  agent.onUserMessage(() => "never");
  await assert.rejects(agent.dialIn(bridge.url, "not-the-right-token-at-all"), (error) => {
    assert.ok(error instanceof HelloRejected);
    assert.equal(error.code, "unauthorized");
    return true;
  });
});

test("a pull agent answers a web chat message from behind a firewall", async () => {
  const agent = new Agent("ts-pull", { log: null });
  const statuses: boolean[] = [];
  agent.onUserMessage(async (turn) => {
    statuses.push(await turn.status("Pulling…"));
    return { type: "agent_message", content: `Pulled: ${turn.content}` };
  });
  const running = agent.pull(bridge.url, PULL_TOKEN, { waitSeconds: 2 });
  const visitor = new Visitor(bridge.url, 2);
  await visitor.say("anyone pulling?");
  assert.deepEqual(await visitor.replies(1), ["Pulled: anyone pulling?"]);
  assert.deepEqual(statuses, [true]);
  agent.stop();
  await running;
});

test("a pull agent with a wrong token stops with PullRefused (401)", async () => {
  const agent = new Agent("ts-pull", { log: null });
  await assert.rejects(
    agent.pull(bridge.url, "wrong-token-wrong-token", { waitSeconds: 0 }),
    (error) => {
      assert.ok(error instanceof PullRefused);
      assert.equal(error.status, 401);
      return true;
    },
  );
});

test("an agent with a session handler is told of web chat sessions (feature sessions)", async () => {
  const agent = dialAgent();
  agent.onUserMessage(() => "hi");
  const created = new Promise<AgentSessionFrame>((resolve) =>
    agent.onSession((frame) => {
      if (frame.type === "session_created") resolve(frame);
    }),
  );
  const running = agent.dialIn(bridge.url, DIAL_TOKEN);
  await agent.waitConnected();
  const opened = (await post(`${bridge.url}/api/webchat/sessions`, { inbox_id: 1 })) as {
    session_id: string;
  };
  const frame = await created;
  assert.equal(frame.session_id, opened.session_id);
  assert.equal(frame.channel, "webchat");
  agent.stop();
  await running;
});
