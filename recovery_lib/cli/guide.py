"""The incident guide's own command names, installed as console scripts: thin aliases of the real commands.

Users of the original tool type ``data_recovery --dry-run``, ``processing_monitor 6`` and
``reprocess_failed``; ``pip install`` puts these three names on the PATH (``[project.scripts]``)
and each one hands its arguments to :func:`recovery_lib.cli.main` as the command it stands for,
so the parsing, validation (exit 2 before any connection), output and exit codes are that
command's own:

* ``data_recovery [--dry-run] [--batch-size N] [--user-id UUID] [--no-verify] [--status S]`` is
  ``python -m recovery_lib recover ...`` (the same flags, and recover's others too);
* ``processing_monitor [HOURS]`` is ``python -m recovery_lib monitor --hours HOURS`` (24 left out);
* ``reprocess_failed`` is ``python -m recovery_lib reprocess-failed``.

``-v`` / ``--verbose`` may stand anywhere: it is moved in front of the command, where the real
parser expects it.

    >>> data_recovery(["--dry-run", "--batch-size", "200"])   # = main(["recover", "--dry-run", ...])
    0
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from recovery_lib.cli import main

VERBOSE = ("-v", "--verbose")


def forward(command: str, argv: Sequence[str] | None) -> list[str]:
    """The real command line for ``command`` given the guide's arguments (default: ``sys.argv[1:]``)."""
    given = list(sys.argv[1:] if argv is None else argv)
    verbose = [a for a in given if a in VERBOSE][:1]
    return [*verbose, command, *(a for a in given if a not in VERBOSE)]


def data_recovery(argv: Sequence[str] | None = None) -> int:
    """``data_recovery`` = ``recover``: the flags of the guide (``--dry-run``, ``--batch-size N``,
    ``--user-id UUID``, ``--no-verify``, ``--status S``) are recover's own."""
    return main(forward("recover", argv))


def processing_monitor(argv: Sequence[str] | None = None) -> int:
    """``processing_monitor [HOURS]`` = ``monitor --hours HOURS`` (24 when left out); monitor's flags follow."""
    args = forward("monitor", argv)
    at = args.index("monitor") + 1
    if at < len(args) and (not args[at].startswith("-") or re.fullmatch(r"-\d+(\.\d*)?", args[at])):
        # The guide's positional window in hours (a negative one too, so that monitor names it).
        args[at:at + 1] = [f"--hours={args[at]}"]
    return main(args)


def reprocess_failed(argv: Sequence[str] | None = None) -> int:
    """``reprocess_failed`` = ``reprocess-failed``: the legacy path (status ``error`` only, no silent loss)."""
    return main(forward("reprocess-failed", argv))
