"""Agent transports: the ways the bridge reaches an AI agent."""
