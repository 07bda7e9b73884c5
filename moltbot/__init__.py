"""moltbot: a local-first personal AI assistant gateway, supervised like OTP, running on Ray."""

__version__ = "0.1.0"
