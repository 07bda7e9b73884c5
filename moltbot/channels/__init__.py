"""Channel adapters: thin translators between the platforms' SDKs and moltbot messages.

Import an adapter from its module (``moltbot.channels.telegram`` ...): each pulls in its SDK.
"""

from moltbot.channels.base import ChannelAdapter, InboundSink

__all__ = ["ChannelAdapter", "InboundSink"]
