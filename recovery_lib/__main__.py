"""``python -m recovery_lib``: the command line (see :mod:`recovery_lib.cli`)."""

from recovery_lib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
