import { Agent } from "@chatbridge/client";

const agent = new Agent("support-bot");

agent.onUserMessage(async (turn) => {
  await turn.status("Thinking…"); // shown live in the web chat
  return `You said: ${turn.content}`; // or turn.stream(piece) as it comes
});

await agent.dialIn(process.env.BRIDGE_URL!, process.env.AGENT_TOKEN!); // ws://…/api/ws/agent
