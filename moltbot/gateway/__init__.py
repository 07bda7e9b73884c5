"""The gateway: WebSocket + HTTP on one port (frames, auth, methods, the web page).

``GatewayServer(settings, backend)`` serves a ``Backend`` (see ``backend.py``); it never
imports Ray. Import from the submodules (``moltbot.gateway.server`` ...).
"""
