#!/usr/bin/env node
// Regenerates the agent protocol's message types from the Python models.
//
//   node scripts/generate.mjs           writes schema/agent-protocol.json and src/types.ts
//   node scripts/generate.mjs --check   exits 1 when either checked-in file differs
//
// The schema comes from scripts/dump_schema.py, run by the Python that has chatbridge
// installed: $CHATBRIDGE_PYTHON, else the repository's .venv/bin/python, else python3.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { compile } from "json-schema-to-typescript";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const repo = join(root, "..", "..");
export const SCHEMA_PATH = join(root, "schema", "agent-protocol.json");
export const TYPES_PATH = join(root, "src", "types.ts");

function python() {
  if (process.env.CHATBRIDGE_PYTHON) return process.env.CHATBRIDGE_PYTHON;
  const venv = join(repo, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

/** The schema as the Python models define it, as the text checked in. */
export function dumpSchema() {
  return execFileSync(python(), [join(root, "scripts", "dump_schema.py")], {
    cwd: repo,
    encoding: "utf8",
  });
}

const BANNER = `/* eslint-disable */
// Generated from schema/agent-protocol.json (the Python models' JSON Schema) by
// scripts/generate.mjs. Do not edit: run \`npm run generate\` after changing the protocol.
`;

/** TypeScript for the schema. The schema is pydantic's validation schema, in which a field
 * with a default is optional; every frame's `type` has one, so it is made required here (a
 * frame always carries its type, and the unions are discriminated by it). Property titles
 * are dropped so that only the frames and their parts become named types. */
export async function typesFor(schemaText) {
  const schema = JSON.parse(schemaText);
  schema.title = "ProtocolMessage";
  delete schema.$id;
  for (const def of Object.values(schema.$defs)) {
    const type = def.properties?.type;
    if (type && "const" in type) {
      def.required = [...new Set(["type", ...(def.required ?? [])])];
    }
  }
  dropTitles(schema, true);
  const ts = await compile(schema, "ProtocolMessage", {
    bannerComment: BANNER,
    additionalProperties: false,
    unreachableDefinitions: true,
    strictIndexSignatures: true,
    ignoreMinAndMaxItems: true,
    style: { printWidth: 100 },
  });
  return ts;
}

function dropTitles(node, keep) {
  if (Array.isArray(node)) {
    for (const item of node) dropTitles(item, false);
    return;
  }
  if (node === null || typeof node !== "object") return;
  if (!keep) delete node.title;
  for (const [key, value] of Object.entries(node)) {
    if (key === "$defs") {
      for (const def of Object.values(value)) dropTitles(def, true);
    } else if (key === "properties") {
      for (const prop of Object.values(value)) dropTitles(prop, false);
    } else {
      dropTitles(value, false);
    }
  }
}

/** What differs between the checked-in files and the Python models: [] when nothing. */
export async function drift() {
  const schema = dumpSchema();
  const types = await typesFor(schema);
  const stale = [];
  if (!existsSync(SCHEMA_PATH) || readFileSync(SCHEMA_PATH, "utf8") !== schema) {
    stale.push(SCHEMA_PATH);
  }
  if (!existsSync(TYPES_PATH) || readFileSync(TYPES_PATH, "utf8") !== types) {
    stale.push(TYPES_PATH);
  }
  return stale;
}

async function main() {
  if (process.argv.includes("--check")) {
    const stale = await drift();
    if (stale.length) {
      console.error(
        `out of date with the Python protocol models: ${stale.join(", ")}\n` +
          "run `npm run generate` in clients/typescript and commit the result",
      );
      process.exit(1);
    }
    console.log("schema and types match the Python models");
    return;
  }
  const schema = dumpSchema();
  writeFileSync(SCHEMA_PATH, schema);
  writeFileSync(TYPES_PATH, await typesFor(schema));
  console.log(`wrote ${SCHEMA_PATH} and ${TYPES_PATH}`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await main();
}
