"""Payload checksums: the renderings of a stored payload the tool reproduces exactly, and each one's verdict.

``payload_hash`` is what the Health Export API computed when it stored the ingestion: the SHA-256
(64 lower-case hex digits) of the bytes it received, or of its own serialisation of the parsed
payload (``Ladvien/self-sensored``, ``src/handlers/ingest.rs``). Never of PostgreSQL's jsonb text,
which cannot give those bytes back (jsonb reorders keys, drops whitespace, rewrites numbers). So
the tool computes the renderings it can reproduce *exactly* from what is stored, and compares:

``jsonb_text``
    The UTF-8 bytes of PostgreSQL's text rendering of the stored value,
    ``sha256(convert_to(raw_payload::text, 'UTF8'))``, computed by the server. A deterministic
    function of the stored value (jsonb is normalised), the same since jsonb appeared (9.4). This
    project's generator and tests store hashes of it; the API never does, so a difference says
    nothing. It is also the tool's own SHA-256 of the stored value (``stored_sha256``), recorded for
    every ingestion, which a recovery compares with its preview's.
``body_text``
    A body kept as text (wrapped, corrupted): the UTF-8 bytes of that text are the body the API
    received and hashed. Exact unless the API decoded the body lossily (invalid UTF-8 became
    U+FFFD: the text then holds U+FFFD and its original bytes are gone).
``api_serde:<build>``
    The internal form: ``serde_json::to_string(&IngestPayload)`` rebuilt from the stored value with
    the field order and number formatting of each build of the API whose fields fit
    (:mod:`recovery_lib.payload.serde`; an older build's rows verify as that build; of builds that
    write the same bytes, the newest is named).

Verdicts (``checksum`` per ingestion in the reports):

* ``verified``: ``payload_hash`` equals a rendering (``checksum_rendering`` names it);
* ``mismatch``: the rendering the API's hash is of was reproduced exactly and differs: the stored
  value changed after the API hashed it. The ingestion fails as ``checksum_mismatch``;
* ``unverifiable``: no rendering the tool can reproduce is what the API hashed (the exporter's body
  stored as jsonb: its bytes are gone; a lossy text; the internal form of a build the tool does not
  know, or holding a zero float, which may have been ``-0.0``; a placeholder). Reported; recovery
  goes on, unless ``require_verified``;
* ``missing``: no ``payload_hash``; ``skipped``: verification off.

    >>> f"SELECT {PAYLOAD_SHA256_SQL} FROM raw_ingestions WHERE id = %(id)s"   # how the claim hashes
    >>> checksum_matches(" A3F1... ", "a3f1...")
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from recovery_lib.payload import forms
from recovery_lib.payload.serde import Renderer

if TYPE_CHECKING:
    from recovery_lib.payload.stored import Stored

#: SQL expression for the checksum of ``raw_payload`` (alias the table ``r`` or use bare columns).
PAYLOAD_SHA256_SQL = "encode(sha256(convert_to(raw_payload::text, 'UTF8')), 'hex')"

VERIFIED, MISMATCH, UNVERIFIABLE, MISSING, SKIPPED = "verified", "mismatch", "unverifiable", "missing", "skipped"
VERDICTS: tuple[str, ...] = (VERIFIED, MISMATCH, UNVERIFIABLE, MISSING, SKIPPED)
JSONB_TEXT, BODY_TEXT, API_SERDE = "jsonb_text", "body_text", "api_serde"


def checksum_matches(stored_hash: str | None, computed: str | None) -> bool | None:
    """True/False comparing the API's ``payload_hash`` with ours; None when no hash was stored."""
    if not stored_hash or not stored_hash.strip():
        return None
    return computed is not None and stored_hash.strip().lower() == computed.lower()


@dataclass(frozen=True)
class Verdict:
    """One ingestion's checksum: the verdict, the rendering that matched (or was compared), our SHA-256."""

    state: str
    rendering: str | None = None
    stored_sha256: str | None = None  # the server's SHA-256 of the stored value (jsonb_text)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    payload_hash: str | None, stored_sha256: str | None, found: Stored,
    records: Callable[[], Iterable[tuple[str, Any]]],
) -> Verdict:
    """The verdict of one stored payload (see the module docstring).

    ``found``: its form (:func:`~recovery_lib.payload.stored.inspect` with ``with_hash``);
    ``records``: for the internal form, its objects as ``(list, object)``, metrics first, streamed.
    """
    if checksum_matches(payload_hash, None) is None:
        return Verdict(MISSING, None, stored_sha256)
    if checksum_matches(payload_hash, stored_sha256):
        return Verdict(VERIFIED, JSONB_TEXT, stored_sha256)
    if found.form in forms.TEXT_KEYS:
        if checksum_matches(payload_hash, found.text_sha256):
            return Verdict(VERIFIED, BODY_TEXT, stored_sha256)
        return Verdict(UNVERIFIABLE if found.text_lossy else MISMATCH, BODY_TEXT, stored_sha256)
    if found.form == forms.INTERNAL:
        renderer = Renderer()
        for list_name, obj in records():
            renderer.feed(list_name, obj)
            if not renderer.alive():
                break  # no build fits: nothing more to learn from the rest
        rendered = renderer.finish()
        for one in reversed(rendered):  # builds that write the same bytes: the newest is named
            if checksum_matches(payload_hash, one.sha256):
                return Verdict(VERIFIED, f"{API_SERDE}:{one.build.name}", stored_sha256)
        if rendered and not renderer.ambiguous:
            return Verdict(MISMATCH, f"{API_SERDE}:{rendered[-1].build.name}", stored_sha256)
    return Verdict(UNVERIFIABLE, None, stored_sha256)
