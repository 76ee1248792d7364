"""Keep the database password out of every output: masked URLs, scrubbed text, a logging filter.

The password reaches the tool only through ``DATABASE_URL`` (in any form libpq takes: userinfo,
``?password=``, a key=value string) or ``PGPASSWORD``; it must never be printed, logged,
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
import re
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url

MIN_SECRET_LENGTH = 4  # shorter passwords are not scrubbed (see database_secrets)


# A key=value connection string (libpq's other form): password = value, or a quoted 'va\'lue'.
_DSN_PASSWORD = re.compile(r"(?P<lead>(?:^|\s)password\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|[^\s']\S*)")
_MASK = "***"


def _dsn_passwords(text: str) -> list[str]:
    found = []
    for match in _DSN_PASSWORD.finditer(text):
        value = match.group("value")
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.append(value)
    return found


def _is_dsn(text: str) -> bool:
    return "://" not in text and "=" in text


def mask_url(url: str | URL) -> str:
    """The URL with every password replaced by ``***``; safe to print, log or store.

    Every form libpq takes a password in: the userinfo (``postgresql://u:pw@host/db``), a
    ``password`` query parameter (``postgresql://u@/db?host=...&password=pw``) and a key=value
    connection string (``host=... password=pw``).
    """
    if isinstance(url, str) and _is_dsn(url.strip()):
        return _DSN_PASSWORD.sub(lambda m: m.group("lead") + _MASK, url.strip())
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:  # noqa: BLE001 - an unparseable URL is shown as nothing rather than leaked
        return "<unparseable database URL>"
    masked_query = "password" in parsed.query
    if masked_query:
        parsed = parsed.difference_update_query(["password"])
    text = parsed.render_as_string(hide_password=True)
    if masked_query:
        text += ("&" if parsed.query else "?") + f"password={_MASK}"
    return text


def database_secrets(url: str | None = None) -> list[str]:
    """Every password in ``url`` (default ``DATABASE_URL``) and ``PGPASSWORD``, raw and URL-quoted.

    Empty when there is none. The userinfo, ``password`` query parameters and key=value
    connection strings all count (see :func:`mask_url`).
    """
    text = (url if url is not None else os.environ.get("DATABASE_URL", "")).strip()
    passwords = [os.environ.get("PGPASSWORD", "")]
    if _is_dsn(text):
        passwords += _dsn_passwords(text)
    elif text:
        try:
            parsed = make_url(text)
        except Exception:  # noqa: BLE001 - an unparseable URL: nothing reliable to scrub
            parsed = None
        if parsed is not None:
            passwords.append(str(parsed.password or ""))
            query = parsed.query.get("password", ())
            passwords += [query] if isinstance(query, str) else list(query)
    forms: set[str] = set()
    for password in passwords:
        # Scrubbing a one- to three-character string would mangle every output it occurs in.
        if password and len(password) >= MIN_SECRET_LENGTH:
            forms |= {password, quote(password, safe=""), quote_plus(password)}
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
