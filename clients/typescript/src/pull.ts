// http pull: the agent long-polls `GET /api/agent/turns` (each turn comes under a lease) and
// posts every frame of a turn to `POST /api/agent/turns/{id}/reply?lease=…`. No socket and no
// inbound port on the agent's side.
import { pause, reconnectDelay } from "./backoff.js";
import { type SendFrame, isAnswer, turnKey } from "./turn.js";
import type { AgentToBridge, UserMessage } from "./types.js";

/** The bridge refused the pull agent's credentials or configuration (401, 403, 409). */
export class PullRefused extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(`the bridge refused the pull agent (${status}): ${message}`);
    this.name = "PullRefused";
    this.status = status;
  }
}

export interface PullOptions {
  signal?: AbortSignal;
  /** Seconds the bridge may hold each poll (default 25). */
  waitSeconds?: number;
  /** Turns per poll (default 10). */
  limit?: number;
}

/** A turn as `GET /api/agent/turns` offers it. */
export interface PulledTurn {
  lease_id: string;
  lease_expires_at: string;
  turn: UserMessage;
}

/** What the loop needs of its agent. */
export interface PullHost {
  agentId: string;
  fetch: typeof fetch;
  stop: AbortSignal;
  initialDelayMs: number;
  maxDelayMs: number;
  log: (line: string) => void;
  /** Run the turn (or answer it from what was kept) with `send` for its frames. */
  offer: (frame: UserMessage, send: SendFrame) => void;
}

/** Poll and answer until `host.stop` aborts.
 *
 * @throws PullRefused on 401 / 403 / 409: retrying would not help. */
export async function pullTurns(
  host: PullHost,
  url: string,
  token: string,
  options: PullOptions,
): Promise<void> {
  const base = url.replace(/\/+$/, "");
  const headers = { Authorization: `Bearer ${token}`, "X-Agent-Id": host.agentId };
  const query = `wait=${options.waitSeconds ?? 25}&limit=${options.limit ?? 10}`;
  // The newest offer of each turn not yet answered: a turn offered again (its lease ran out
  // while the handler worked) is answered under its newest lease.
  const leases = new Map<string, PulledTurn>();
  const reply = async (key: string, first: PulledTurn, frame: AgentToBridge): Promise<boolean> => {
    const offer = leases.get(key) ?? first;
    if (isAnswer(frame)) leases.delete(key);
    return postReply(host, base, headers, offer, frame);
  };
  let attempt = 0;
  let announced = false;
  while (!host.stop.aborted) {
    let delay: number | null = null;
    try {
      const response = await host.fetch(`${base}/api/agent/turns?${query}`, {
        headers,
        signal: host.stop,
      });
      if (response.status === 401 || response.status === 403 || response.status === 409) {
        throw new PullRefused(response.status, await errorText(response));
      }
      if (!response.ok) {
        delay =
          retryAfterMs(response) ?? reconnectDelay(attempt, host.initialDelayMs, host.maxDelayMs);
        host.log(`pulling turns failed: ${response.status} ${await errorText(response)}`);
      } else {
        if (!announced) {
          host.log(`pulling turns from ${base} as agent ${host.agentId}`);
          announced = true;
        }
        attempt = 0;
        const body = (await response.json()) as { turns: PulledTurn[] };
        for (const offer of body.turns) {
          const key = turnKey(offer.turn);
          leases.set(key, offer);
          host.offer(offer.turn, (frame) => reply(key, offer, frame));
        }
      }
    } catch (error) {
      if (error instanceof PullRefused) throw error;
      if (host.stop.aborted) break;
      host.log(`pulling turns failed: ${String(error)}`);
      delay = reconnectDelay(attempt, host.initialDelayMs, host.maxDelayMs);
    }
    if (delay !== null) {
      attempt += 1;
      await pause(delay, host.stop);
    }
  }
}

async function postReply(
  host: PullHost,
  base: string,
  headers: Record<string, string>,
  offer: PulledTurn,
  frame: AgentToBridge,
): Promise<boolean> {
  const id = encodeURIComponent(offer.turn.message_id);
  const lease = encodeURIComponent(offer.lease_id);
  try {
    const response = await host.fetch(`${base}/api/agent/turns/${id}/reply?lease=${lease}`, {
      method: "POST",
      headers: { ...headers, "Content-Type": "application/json" },
      body: JSON.stringify(frame),
    });
    if (!response.ok) {
      // 404 / 409: the turn was withdrawn or offered again; it comes back if it still counts
      host.log(`reply to ${offer.turn.message_id} refused: ${await errorText(response)}`);
    }
    return response.ok;
  } catch (error) {
    host.log(`reply to ${offer.turn.message_id} failed: ${String(error)}`);
    return false;
  }
}

function retryAfterMs(response: Response): number | null {
  const value = Number(response.headers.get("retry-after"));
  return Number.isFinite(value) && value > 0 ? value * 1000 : null;
}

async function errorText(response: Response): Promise<string> {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { error?: { message?: string } };
    return body.error?.message ?? text;
  } catch {
    return text;
  }
}
