"""The agent runtime: turn loop, context window, session gating, model providers."""
