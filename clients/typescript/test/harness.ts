// A real bridge for the tests: `python -m chatbridge serve` in a child process, on a free
// port, with SQLite in a temporary directory and the routes a test gives it.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

/** clients/typescript (the tests run from dist/test). */
export const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const REPO_ROOT = join(PACKAGE_ROOT, "..", "..");

export function python(): string {
  if (process.env.CHATBRIDGE_PYTHON) return process.env.CHATBRIDGE_PYTHON;
  const venv = join(REPO_ROOT, ".venv", "bin", "python");
  return existsSync(venv) ? venv : "python3";
}

export interface Route {
  inbox: number;
  agentId: string;
  transport: "ws-dial-in" | "http-pull" | "ws-dial-out" | "http-webhook";
  /** ws-dial-in and http-pull */
  token?: string;
  /** ws-dial-out */
  websocketUrl?: string;
  /** http-webhook */
  webhookUrl?: string;
  secret?: string;
  timeoutSeconds?: number;
}

export interface Bridge {
  url: string;
  port: number;
  /** What the bridge printed so far (for failure messages). */
  output(): string;
  stop(): Promise<void>;
}

/** Poll `check` until it returns true or `ms` pass (then throw, with `what`). */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string,
  ms = 30_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

export async function startBridge(
  routes: Route[],
  env: Record<string, string> = {},
): Promise<Bridge> {
  const dir = mkdtempSync(join(tmpdir(), "chatbridge-ts-"));
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(
      ([name]) => !/^(CHATBRIDGE_|CHATWOOT_|INBOX_AGENT)/.test(name),
    ),
  );
  const mappings = routes.map((r) => ({
    channel: "webchat",
    inbox_id: r.inbox,
    agent_config: {
      agent_id: r.agentId,
      transport: r.transport,
      ...(r.token ? { token: r.token } : {}),
      ...(r.websocketUrl ? { websocket_url: r.websocketUrl } : {}),
      ...(r.webhookUrl ? { webhook_url: r.webhookUrl, secret: r.secret } : {}),
      timeout_seconds: r.timeoutSeconds ?? 30,
    },
  }));
  const child: ChildProcess = spawn(python(), [join(PACKAGE_ROOT, "test", "bridge.py")], {
    cwd: dir,
    env: {
      ...clean,
      CHATBRIDGE_DATABASE_URL: `sqlite+aiosqlite:///${join(dir, "bridge.db")}`,
      INBOX_AGENT_MAPPINGS: JSON.stringify(mappings),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stderr?.on("data", keep);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const lines = createInterface({ input: child.stdout! });
  const port = await new Promise<number>((resolve, reject) => {
    lines.once("line", (line) => resolve((JSON.parse(line) as { port: number }).port));
    child.once("exit", (code) => reject(new Error(`bridge exited (${code}): ${output}`)));
  });
  lines.on("line", (line) => keep(Buffer.from(`${line}\n`)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(
      async () => {
        if (child.exitCode !== null) throw new Error(`bridge exited: ${output}`);
        try {
          return (await fetch(`${url}/ready`)).ok;
        } catch {
          return false;
        }
      },
      "the bridge to be ready",
      60_000,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, port, output: () => output, stop };
}

/** A web chat visitor over plain HTTP: opens a session, says something, reads the history. */
export class Visitor {
  constructor(
    readonly bridge: string,
    readonly inbox: number,
  ) {}
  sessionId: string | null = null;

  async say(text: string): Promise<void> {
    if (this.sessionId === null) {
      const opened = await post(`${this.bridge}/api/webchat/sessions`, { inbox_id: this.inbox });
      this.sessionId = (opened as { session_id: string }).session_id;
    }
    await post(`${this.bridge}/api/webchat/sessions/${this.sessionId}/messages`, { text });
  }

  private cursor: string | null = null;
  private readonly seen: Array<{ role: string; text: string }> = [];

  /** The agent's replies so far, waiting (long-polls, bounded) until there are `count`. */
  async replies(count: number, ms = 30_000): Promise<string[]> {
    const agent = (): string[] => this.seen.filter((m) => m.role === "agent").map((m) => m.text);
    await until(
      async () => {
        const after = this.cursor ? `&after=${this.cursor}` : "";
        const r = await fetch(
          `${this.bridge}/api/webchat/sessions/${this.sessionId}/messages?wait=2${after}`,
        );
        const body = (await r.json()) as {
          messages: Array<{ role: string; text: string }>;
          cursor: string | null;
        };
        this.seen.push(...body.messages);
        this.cursor = body.cursor ?? this.cursor;
        return agent().length >= count;
      },
      `${count} agent replies`,
      ms,
    );
    return agent();
  }
}

export async function post(url: string, body: unknown): Promise<unknown> {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const parsed: unknown = await r.json();
  if (!r.ok) throw new Error(`${url}: ${r.status} ${JSON.stringify(parsed)}`);
  return parsed;
}
