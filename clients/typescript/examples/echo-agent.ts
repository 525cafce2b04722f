import { Agent } from "@chatbridge/client";

const agent = new Agent(process.env.AGENT_ID ?? "support-bot");

agent.onUserMessage(async (turn) => {
  await turn.status("Thinking…"); // shown live in the web chat
  return `You said: ${turn.content}`; // or turn.stream(piece) as it comes
});

await agent.dialIn(process.env.BRIDGE_URL ?? "ws://127.0.0.1:8000/api/ws/agent", process.env.AGENT_TOKEN!);
