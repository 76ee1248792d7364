"""``runs/index.jsonl``: one hash-chained line per notebook execution.

Each line is a JSON object with the run's facts (time, notebook, parameters, outcome, the
executed notebook / report / HTML paths and their SHA-256) plus:

* ``prev_hash``: SHA-256 of the previous line's exact text (64 zeros on the first line);
* ``hash``: SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of all other fields.

:func:`verify_index` recomputes both, so an edited line (its ``hash`` no longer matches), a
deleted or reordered line (the next ``prev_hash`` no longer matches), an edited or deleted
notebook / report / HTML file (its SHA-256 no longer matches), and a run file that no line
mentions (e.g. the last line was cut off) are all reported. Paths are stored relative to the
index's folder so a ``runs/`` folder can be archived and verified elsewhere.

What a chain cannot prove on its own: that nobody deleted the LAST line together with its files,
or rewrote the whole file. Keep the last ``hash`` (printed by ``audit verify``) somewhere else
(a ticket, a change log) to anchor it.

    >>> append_record(Path("runs/index.jsonl"), {"notebook": "monitor", "outcome": "ok", ...})
    >>> verify_index(Path("runs/index.jsonl"))
    []
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recovery_lib.db import PROJECT_ROOT

DEFAULT_RUNS_DIR = PROJECT_ROOT / "runs"
INDEX_NAME = "index.jsonl"

ZERO_HASH = "0" * 64
# Files the runner writes into runs/ (see runner.output_stem); others are not audited.
RUN_FILE = re.compile(r"^\d{8}T\d{6}Z_[\w.-]+\.(ipynb|json|html)$")
# Record fields that name a file (relative to the index folder) and the field with its SHA-256.
FILE_FIELDS: tuple[tuple[str, str], ...] = (
    ("executed_notebook", "executed_notebook_sha256"),
    ("report", "report_sha256"),
    ("html", "html_sha256"),
)


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's ``hash`` covers: every field but ``hash``, canonical JSON."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _last_line(handle: Any) -> str | None:
    handle.seek(0)
    last = None
    for line in handle:
        if line.strip():
            last = line.rstrip("\n")
    return last


def append_record(index: Path | str, record: Mapping[str, Any]) -> dict[str, Any]:
    """Append ``record`` to the index with ``prev_hash`` and ``hash`` set; return the stored record.

    The index is locked (``flock``) while the last line is read and the new one appended, so
    concurrent runners still produce one chain. The file is created with mode 0600.
    """
    index = Path(index)
    index.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(index, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    os.chmod(index, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            last = _last_line(handle)
            stored = {k: v for k, v in record.items() if k not in ("prev_hash", "hash")}
            stored["prev_hash"] = sha256_text(last) if last is not None else ZERO_HASH
            stored["hash"] = hashlib.sha256(canonical(stored)).hexdigest()
            handle.seek(0, os.SEEK_END)
            handle.write(json.dumps(stored, sort_keys=True, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return stored


def read_index(index: Path | str) -> list[dict[str, Any]]:
    """Every record of the index (lines that are not JSON objects are skipped)."""
    records = []
    path = Path(index)
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def verify_index(index: Path | str, *, check_files: bool = True) -> list[str]:
    """Every problem found in the index and the files it lists; an empty list means intact.

    A missing index is a problem; an empty one is not (nothing has run yet).
    """
    index = Path(index)
    if not index.exists():
        return [f"{index}: index not found"]
    problems: list[str] = []
    base = index.parent
    prev_text: str | None = None
    mentioned: set[str] = set()
    lines = index.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, text in enumerate(lines, start=1):
        where = f"line {number}"
        expected_prev = sha256_text(prev_text) if prev_text is not None else ZERO_HASH
        prev_text = text
        try:
            record = json.loads(text)
        except ValueError:
            problems.append(f"{where}: not valid JSON (edited or truncated)")
            continue
        if not isinstance(record, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        if record.get("prev_hash") != expected_prev:
            problems.append(
                f"{where}: prev_hash does not match the line before it "
                "(a line was deleted, inserted, reordered or edited before this one)"
            )
        if record.get("hash") != hashlib.sha256(canonical(record)).hexdigest():
            problems.append(f"{where}: hash does not match its content (the line was edited)")
        for name_field, hash_field in FILE_FIELDS:
            name = record.get(name_field)
            if not name:
                continue
            mentioned.add(Path(name).name)
            if not check_files:
                continue
            path = base / name
            if not path.exists():
                problems.append(f"{where}: {name_field} {name} is missing")
            elif record.get(hash_field) != sha256_file(path):
                problems.append(f"{where}: {name_field} {name} changed since it was recorded (SHA-256 differs)")
    if check_files:
        for path in sorted(base.iterdir()):
            if RUN_FILE.match(path.name) and path.name not in mentioned:
                problems.append(f"{path.name}: run file not recorded in {index.name} (a record was removed?)")
    return problems


def last_hash(index: Path | str) -> str | None:
    """The ``hash`` of the index's last record (to anchor the chain elsewhere), or None."""
    records = read_index(index)
    return records[-1].get("hash") if records else None
