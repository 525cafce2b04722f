// A TypeScript agent the bridge dials (ws-dial-out): it serves a WebSocket, a real bridge
// connects to it and sends it a web chat visitor's turn.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Agent } from "../src/index.js";
import { type Bridge, Visitor, startBridge } from "./harness.js";

let bridge: Bridge;
let agent: Agent;

before(async () => {
  agent = new Agent("ts-served", { log: null });
  agent.onUserMessage(async (turn) => {
    await turn.stream("Served: ");
    await turn.stream(turn.content);
  });
  const port = await agent.serve(0);
  bridge = await startBridge([
    {
      inbox: 4,
      agentId: "ts-served",
      transport: "ws-dial-out",
      websocketUrl: `ws://127.0.0.1:${port}`,
    },
  ]);
});

after(async () => {
  agent?.stop();
  await bridge?.stop();
});

test("an agent the bridge dials answers a web chat visitor", async () => {
  const visitor = new Visitor(bridge.url, 4);
  await visitor.say("dial me");
  assert.deepEqual(await visitor.replies(1), ["Served: dial me"]);
});
