"""The ``moltbot`` command."""
