"""Every exception the package raises on purpose, in one place.

What a caller may catch and what it means:

* :class:`ParameterError`: a run parameter a person must correct (CLI exit 2, nothing touched).
* :class:`BatchConfigError`: a chunk size that could break PostgreSQL's 65,535-parameter limit.
* :class:`PayloadError`: a whole payload cannot be read (``not_json``, ``invalid_structure``,
  ``empty_payload``); the ingestion fails with that category, the run goes on.
* :class:`RecoveryAborted`: the run stopped early (the database stayed unreachable); it carries
  the report of what was done.
* :class:`IncidentExistsError`: the incident generator refuses to write over another incident.
* :class:`StepFailed`: one step of a scheduled fan-out failed (the scheduler retries or stops);
  it carries the step's summary.
* :class:`KernelSetupError`: the notebook kernel's socket folder is unusable (someone else's,
  or too deep for a unix socket path); the message names ``RECOVERY_KERNEL_DIR``.

Signals used inside the package (never reach a caller): :class:`Reject` (one point cannot become
a row), :class:`StructureError` (valid JSON of the wrong shape, while streaming),
:class:`NumberTooLong` (a number the streaming reader must not be given) and
:class:`NotForSql` (the SQL fast path hands a payload back to the parser).

    >>> str(PayloadError("not_json", "the payload is not valid JSON"))
    'not_json: the payload is not valid JSON'
"""

from __future__ import annotations

from typing import Any


class ParameterError(ValueError):
    """A parameter a person must correct; the message names it and what is allowed."""


class BatchConfigError(ValueError):
    """A chunk size that could exceed the parameter limit, or is not a positive whole number."""


class PayloadError(Exception):
    """A payload-level failure: the parse stops.

    ``category`` is ``not_json``, ``invalid_structure`` or ``empty_payload``; ``message`` describes
    the structure only, never a value (ijson's own messages quote the text, so they are dropped).
    """

    def __init__(self, category: str, message: str):
        super().__init__(category, message)
        self.category = category
        self.message = message

    def __str__(self) -> str:
        return f"{self.category}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"category": self.category, "message": self.message}


class Reject(Exception):
    """One point cannot become a row: ``category`` and the ``field`` at fault (never the value)."""

    def __init__(self, category: str, field: str | None = None):
        super().__init__(category, field)
        self.category = category
        self.field = field


class StructureError(Exception):
    """Valid JSON so far, wrong shape; becomes ``invalid_structure`` once the text is known to be JSON."""


class NumberTooLong(Exception):
    """A number longer than Python converts to ``int``, met in a text stream: read it another way."""


class NotForSql(Exception):
    """What SQL found cannot be taken exactly like the parser: roll back and let the parser do it."""


class RecoveryAborted(RuntimeError):
    """The run stopped early (e.g. the database stayed unreachable); ``report`` has what was done."""

    def __init__(self, message: str, report: Any):
        super().__init__(message)
        self.report = report  # a recovery.report.RecoveryReport


class IncidentExistsError(RuntimeError):
    """The database already holds ingestions: a second incident would blur the ground truth."""


class KernelSetupError(RuntimeError):
    """The folder for the kernel's unix sockets cannot be used; nothing was executed."""


class StepFailed(RuntimeError):
    """A scheduled step's notebook failed, or verify found rows missing; ``summary`` says what ran."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary
