// The checked-in schema and types against the Python models they are generated from: the
// check fails when a model changes and nobody ran `npm run generate`.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { PACKAGE_ROOT, python } from "./harness.js";

function check(env: Record<string, string> = {}): { status: number | null; output: string } {
  const run = spawnSync(process.execPath, ["scripts/generate.mjs", "--check"], {
    cwd: PACKAGE_ROOT,
    env: { ...process.env, ...env },
    encoding: "utf8",
  });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

test("schema/agent-protocol.json and src/types.ts match the Python protocol models", () => {
  const { status, output } = check();
  assert.equal(status, 0, output);
});

test("the check fails when a Python model gains a field the checked-in files lack", () => {
  // A stand-in for the Python models with one more optional field on user_message.
  const dir = mkdtempSync(join(tmpdir(), "chatbridge-drift-"));
  try {
    const changed = join(dir, "python");
    const code = [
      "import json, sys",
      "from chatbridge.protocol import protocol_json_schema",
      "s = protocol_json_schema()",
      "s['$defs']['UserMessage']['properties']['traceparent'] = {'type': 'string'}",
      "json.dump(s, sys.stdout, indent=2, ensure_ascii=False)",
      "sys.stdout.write('\\n')",
    ].join("\n");
    writeFileSync(changed, `#!/bin/sh\nexec "${python()}" -c "$CODE"\n`);
    chmodSync(changed, 0o755);
    const { status, output } = check({ CHATBRIDGE_PYTHON: changed, CODE: code });
    assert.equal(status, 1, output);
    assert.match(output, /agent-protocol\.json/);
    assert.match(output, /types\.ts/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
