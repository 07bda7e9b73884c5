"""Security building blocks: the credentials vault, tokens, private file modes, and (in sibling
modules) origin checks, rate limits, the audit log and channel access.

Nothing is re-exported here so that importing one piece never pulls in the others.
"""
