// The chat client in a real browser (Chromium, driven by test/browser_chat.py with
// Playwright): a page on another origin imports dist/src/chat.js as it is, opens a session on
// a real bridge, sends a message and gets the agent's streamed reply, all with the browser's
// own fetch and WebSocket.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join, normalize } from "node:path";
import { after, before, test } from "node:test";
import { Agent } from "../src/index.js";
import { type Bridge, PACKAGE_ROOT, python, startBridge } from "./harness.js";

const TOKEN = "ts-browser-agent-token-0123";

const PAGE = `<!doctype html>
<meta charset="utf-8">
<script type="module">
  import { ChatClient } from "/dist/src/chat.js";
  const bridge = new URLSearchParams(location.search).get("bridge");
  const events = [];
  const chat = new ChatClient({ bridge, inboxId: 1 });
  chat.on("agent_streaming", (f) => events.push("chunk " + f.content));
  chat.on("message", (f) => {
    events.push(f.message.role + " " + f.message.text);
    if (f.message.role === "agent") window.done = events;
  });
  const session = await chat.connect();
  events.push("session " + session.session_id.slice(0, 3));
  const ack = await chat.send("from the browser");
  events.push("ack " + ack.status);
</script>`;

let site: Server;
let bridge: Bridge;
let agent: Agent;
let agentRunning: Promise<void>;

before(async () => {
  // the page's origin: serves the test page and the package's built files
  site = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://x").pathname;
    if (path === "/") {
      response.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
      response.end(PAGE);
      return;
    }
    const file = normalize(join(PACKAGE_ROOT, path));
    if (!path.startsWith("/dist/") || !file.startsWith(join(PACKAGE_ROOT, "dist"))) {
      response.writeHead(404).end();
      return;
    }
    readFile(file).then(
      (body) => {
        response.writeHead(200, { "Content-Type": "text/javascript; charset=utf-8" });
        response.end(body);
      },
      () => response.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  bridge = await startBridge(
    [{ inbox: 1, agentId: "ts-browser-agent", transport: "ws-dial-in", token: TOKEN }],
    { CHATBRIDGE_WEBCHAT_CORS_ORIGINS: JSON.stringify([origin]) },
  );
  agent = new Agent("ts-browser-agent", { log: null });
  agent.onUserMessage(async (turn) => {
    await turn.stream("You wrote ");
    await turn.stream(`"${turn.content}"`);
  });
  agentRunning = agent.dialIn(bridge.url, TOKEN);
  await agent.waitConnected();
});

after(async () => {
  agent?.stop();
  await agentRunning;
  await bridge?.stop();
  await new Promise((resolve) => site?.close(resolve));
});

test("in Chromium, the chat client sends a message and gets the agent's streamed reply", async (t) => {
  const origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
  const page = `${origin}/?bridge=${encodeURIComponent(bridge.url)}`;
  // not spawnSync: the page's server and the agent live in this process's event loop
  const child = spawn(python(), [join(PACKAGE_ROOT, "test", "browser_chat.py"), page]);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const status = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  const run = { status, stdout, stderr };
  if (run.status === 77) {
    assert.notEqual(process.env.CI, "true", "/usr/bin/chromium is required in CI");
    t.skip("/usr/bin/chromium is not installed");
    return;
  }
  assert.equal(run.status, 0, `${run.stdout}\n${run.stderr}`);
  const events = JSON.parse(run.stdout) as string[];
  assert.equal(events[0], "session ws_");
  assert.ok(events.includes("ack accepted"), run.stdout);
  assert.ok(events.includes("user from the browser"), run.stdout);
  assert.ok(events.includes('chunk "from the browser"'), run.stdout);
  assert.equal(events.at(-1), 'agent You wrote "from the browser"');
});
