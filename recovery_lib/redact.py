"""Keep the database password out of every output: masked URLs, scrubbed text, a logging filter.

The password reaches the tool only through ``DATABASE_URL``; it must never be printed, logged,
stored in a report or written into an executed notebook. Everything that shows a URL calls
:func:`mask_url`; the runner, the CLI and the kernels scrub what they write with the secrets of
:func:`database_secrets` as a second line of defence.

    >>> mask_url("postgresql://app:s3cret@db/health")
    'postgresql://app:***@db/health'
    >>> scrub_text("connect with s3cret failed", ["s3cret"])
    'connect with *** failed'
"""

from __future__ import annotations

import logging
import os
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url

MIN_SECRET_LENGTH = 4  # shorter passwords are not scrubbed (see database_secrets)


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***``; safe to print, log or store."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:  # noqa: BLE001 - an unparseable URL is shown as nothing rather than leaked
        return "<unparseable database URL>"
    return parsed.render_as_string(hide_password=True)


def database_secrets(url: str | None = None) -> list[str]:
    """The password of ``url`` (default ``DATABASE_URL``), raw and URL-quoted; empty when there is none."""
    text = url if url is not None else os.environ.get("DATABASE_URL", "")
    if not text.strip():
        return []
    try:
        password = make_url(text.strip()).password
    except Exception:  # noqa: BLE001 - an unparseable URL: nothing reliable to scrub
        return []
    if not password or len(str(password)) < MIN_SECRET_LENGTH:
        # Scrubbing a one- to three-character string would mangle every output it occurs in.
        return []
    forms = {str(password), quote(str(password), safe=""), quote_plus(str(password))}
    return sorted(forms, key=len, reverse=True)


def scrub_text(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in database_secrets() if secrets is None else secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def scrub_value(value: Any, secrets: list[str]) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every secret in every string replaced by ``***``."""
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if isinstance(value, dict):
        return {scrub_text(str(k), secrets): scrub_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v, secrets) for v in value]
    return value


class SecretFilter(logging.Filter):
    """Replace the database password in every log record (defence in depth: it should never be there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = database_secrets()
        if secrets:
            message = record.getMessage()
            clean = scrub_text(message, secrets)
            if clean != message:
                record.msg, record.args = clean, None
        return True


def protect_handlers(logger: logging.Logger | None = None) -> None:
    """Add a :class:`SecretFilter` to every handler of ``logger`` (default: the root logger)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())
