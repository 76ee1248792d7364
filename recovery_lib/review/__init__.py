"""The weekly review: recovery trends, error patterns and alert thresholds over the last N ISO weeks.

Who owns what::

    build.py       gathering the figures (raw_ingestions, recovery_log, the runs archive)
    archive.py     the runs archive of a period: index records and their unchanged reports
    thresholds.py  how often each monitor threshold fired, and when to change one (pure)
    report.py      the review report (JSON-able), its headline and its terminal layout

    >>> from recovery_lib.review import build_review
    >>> print(build_review(engine, ReviewOptions.validated(weeks=4)).headline())
"""

from recovery_lib.review.build import build_review
from recovery_lib.review.report import ReviewReport, format_text_review, headline

__all__ = ["ReviewReport", "build_review", "format_text_review", "headline"]
