// TypeScript agents the bridge reaches: one serving a WebSocket the bridge dials
// (ws-dial-out), one answering the turns the bridge POSTs (http-webhook, signed).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Agent } from "../src/index.js";
import { sign } from "../src/webhook.js";
import { type Bridge, Visitor, startBridge } from "./harness.js";

const SECRET = "ts-webhook-secret-0123456789";
let bridge: Bridge;
let agent: Agent;
let hooked: Agent;
let webhookPort: number;

before(async () => {
  agent = new Agent("ts-served", { log: null });
  agent.onUserMessage(async (turn) => {
    await turn.stream("Served: ");
    await turn.stream(turn.content);
  });
  const port = await agent.serve(0);
  hooked = new Agent("ts-webhook", { log: null });
  hooked.onUserMessage(async (turn) => {
    await turn.status("Reading the hook…");
    return `Hooked: ${turn.content}`;
  });
  webhookPort = await hooked.serveWebhook(SECRET, 0);
  bridge = await startBridge([
    {
      inbox: 4,
      agentId: "ts-served",
      transport: "ws-dial-out",
      websocketUrl: `ws://127.0.0.1:${port}`,
    },
    {
      inbox: 5,
      agentId: "ts-webhook",
      transport: "http-webhook",
      webhookUrl: `http://127.0.0.1:${webhookPort}/turns`,
      secret: SECRET,
    },
  ]);
});

after(async () => {
  agent?.stop();
  hooked?.stop();
  await bridge?.stop();
});

test("an agent the bridge dials answers a web chat visitor", async () => {
  const visitor = new Visitor(bridge.url, 4);
  await visitor.say("dial me");
  assert.deepEqual(await visitor.replies(1), ["Served: dial me"]);
});

test("an agent answering webhooks answers a web chat visitor in the response", async () => {
  const visitor = new Visitor(bridge.url, 5);
  await visitor.say("hook me");
  assert.deepEqual(await visitor.replies(1), ["Hooked: hook me"]);
});

test("a webhook request without the right signature is refused with 401", async () => {
  const body = JSON.stringify({ type: "user_message", message_id: "t_1", conversation_id: "c" });
  const response = await fetch(`http://127.0.0.1:${webhookPort}/turns`, {
    method: "POST",
    headers: { "X-Chatbridge-Signature": sign("another-secret-entirely", body) },
    body,
  });
  assert.equal(response.status, 401);
  const error = (await response.json()) as { error: { code: string } };
  assert.equal(error.error.code, "bad_signature");
});
