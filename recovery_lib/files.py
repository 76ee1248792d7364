"""Private files: what the tool writes (reports, runs, notices) is readable by its owner only.

Reports name users and ingestions; executed notebooks show what a run did. Every file is created
with mode 0600 whatever the umask, and folders of evidence are 0700.

    >>> write_json(Path("out/report.json"), {"ok": True})   # mode 0600
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def private_dir(folder: Path | str) -> Path:
    """``folder`` created if needed and set to mode 0700."""
    path = Path(folder)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600 (whatever the umask), replacing it."""
    target = Path(path)
    fd = os.open(target, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(target, 0o600)
    return target


def write_json(path: Path | str, data: Any) -> Path:
    """``data`` as indented JSON in ``path`` (mode 0600); the parent folder is created."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_private(target, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def create_new_json(folder: Path | str, name: str, fallback: str, data: Any) -> Path:
    """Write ``data`` to ``folder/name``, never over an existing file: ``folder/fallback`` if taken.

    For reports named by the second they started: two runs in the same second keep both files.
    """
    directory = Path(folder)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path = directory / fallback
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str)
    return path
