// The README's TypeScript agent is examples/echo-agent.ts, and it answers a web chat visitor
// through a real bridge when run as its own process.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Bridge, PACKAGE_ROOT, REPO_ROOT, Visitor, startBridge } from "./harness.js";

const TOKEN = "ts-example-token-0123456789";
let bridge: Bridge;
let example: ChildProcess | undefined;

before(async () => {
  bridge = await startBridge([
    { inbox: 3, agentId: "support-bot", transport: "ws-dial-in", token: TOKEN },
  ]);
});

after(async () => {
  if (example && example.exitCode === null && example.signalCode === null) {
    const gone = new Promise((resolve) => example?.once("exit", resolve));
    example.kill("SIGTERM");
    await gone;
  }
  await bridge?.stop();
});

test("the README's TypeScript agent is examples/echo-agent.ts", () => {
  const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
  const source = readFileSync(join(PACKAGE_ROOT, "examples", "echo-agent.ts"), "utf8");
  const block = readme.match(/```ts\n(import \{ Agent \} from "@chatbridge\/client";[\s\S]*?)```/);
  assert.ok(block, "README.md has no ```ts block with the agent");
  assert.equal(block[1], source);
  assert.ok(source.trim().split("\n").length <= 10, "the example stays ten lines");
});

test("the example agent, run as a process, answers a web chat visitor", async () => {
  let output = "";
  example = spawn(process.execPath, [join(PACKAGE_ROOT, "dist", "examples", "echo-agent.js")], {
    cwd: PACKAGE_ROOT,
    env: {
      ...process.env,
      BRIDGE_URL: `${bridge.url.replace("http", "ws")}/api/ws/agent`,
      AGENT_TOKEN: TOKEN,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  example.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  example.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const visitor = new Visitor(bridge.url, 3);
  await visitor.say("hello example");
  assert.deepEqual(await visitor.replies(1), ["You said: hello example"], output);
  assert.match(output, /connected to ws:\/\/127\.0\.0\.1:\d+\/api\/ws\/agent as agent support-bot/);
});
