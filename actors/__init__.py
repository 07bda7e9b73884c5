"""Thin Ray wrappers around moltbot's pure logic: one module per actor kind."""
