"""Pictures, voice notes and files on every channel: sniffing, fitting, the inbox, the note
the agent gets (see ``ingest``)."""
