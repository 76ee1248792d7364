"""Payload checksums: the one SHA-256 expression of a payload as stored, and how hashes are compared.

Exactly which bytes are hashed: the UTF-8 encoding of PostgreSQL's text rendering of the stored
``jsonb`` value, i.e. ``sha256(convert_to(raw_payload::text, 'UTF8'))``, computed by the server.

Why it is stable: ``jsonb`` stores a parsed, normalised value (object keys de-duplicated and
ordered, insignificant whitespace dropped, numbers kept with their scale), and its text output is
a deterministic function of that value. Hashing it server-side involves no client serialiser: the
original tool re-serialised the JSON in the application (key order, spacing and float formatting
varied) and so reported mismatches on payloads that had not changed. The rendering has been the
same since ``jsonb`` appeared (PostgreSQL 9.4); a future change to it would show up as mismatches
on every payload at once, not on a few, which is how to tell it apart from real corruption.

    >>> f"SELECT {PAYLOAD_SHA256_SQL} FROM raw_ingestions WHERE id = %(id)s"   # how the claim hashes
    >>> checksum_matches(" A3F1... ", "a3f1...")
    True
"""

from __future__ import annotations

#: SQL expression for the checksum of ``raw_payload`` (alias the table ``r`` or use bare columns).
PAYLOAD_SHA256_SQL = "encode(sha256(convert_to(raw_payload::text, 'UTF8')), 'hex')"


def checksum_matches(stored_hash: str | None, computed: str) -> bool | None:
    """True/False comparing the API's ``payload_hash`` with ours; None when no hash was stored."""
    if not stored_hash or not stored_hash.strip():
        return None
    return stored_hash.strip().lower() == computed.lower()
