"""``python -m moltbot.plugins MODULE``: print the sha256 to pin a plugin module with."""

from moltbot.plugins.manifest import main

if __name__ == "__main__":
    raise SystemExit(main())
