"""Chatbridge: connects customer channels to AI agents, durably and in order."""

__version__ = "0.1.0"
