"""Durable state on the head node: the inbound journal, session transcripts and small values
(pure parts)."""

from moltbot.store.journal import InboundJournal
from moltbot.store.kv import KeyValueStore
from moltbot.store.transcripts import AsyncTranscripts, SessionInfo, TranscriptStore

__all__ = [
    "AsyncTranscripts",
    "InboundJournal",
    "KeyValueStore",
    "SessionInfo",
    "TranscriptStore",
]
