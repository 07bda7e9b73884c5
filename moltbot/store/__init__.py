"""Durable state on the head node: the inbound journal and session transcripts (pure parts)."""

from moltbot.store.journal import InboundJournal
from moltbot.store.transcripts import AsyncTranscripts, SessionInfo, TranscriptStore

__all__ = ["AsyncTranscripts", "InboundJournal", "SessionInfo", "TranscriptStore"]
