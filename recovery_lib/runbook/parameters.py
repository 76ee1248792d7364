"""Notebook parameters: what a notebook declares, and the command line's strings as those types.

The runner reads the ``parameters`` cell with papermill's ``inspect_notebook``, converts the given
values (strings from the command line) to the declared types, refuses unknown names and builds
the notebook's validated options (:func:`recovery_lib.runbook.notebooks.options_for`), all
before a kernel starts.

    >>> convert_value("statuses", "error,partial_success", "list")
    ['error', 'partial_success']
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recovery_lib.db import PROJECT_ROOT
from recovery_lib.errors import ParameterError
from recovery_lib.runbook.notebooks import NOTEBOOKS, options_for

NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"


@dataclass(frozen=True)
class NotebookParameter:
    """One assignment of a notebook's ``parameters`` cell."""

    name: str
    type_name: str  # int, float, bool, str, list, dict - or inferred from the default
    default: Any
    help: str = ""


def notebook_path(notebook: str | Path, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    """``notebooks/<name>.ipynb`` for a runbook name, or an existing ``.ipynb`` path."""
    candidate = Path(notebook)
    if candidate.suffix == ".ipynb" and candidate.exists():
        return candidate.resolve()
    named = notebooks_dir / f"{notebook}.ipynb"
    if named.exists():
        return named
    known = ", ".join(sorted(p.stem for p in notebooks_dir.glob("*.ipynb"))) or "none"
    raise ParameterError(f"no notebook {str(notebook)!r}; available: {known}")


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def declared_parameters(path: Path) -> dict[str, NotebookParameter]:
    """The parameters cell of ``path``, as papermill sees it (an ``int | None`` annotation is invisible)."""
    import papermill as pm

    declared = {}
    for name, info in pm.inspect_notebook(str(path)).items():
        default = _literal(info["default"])
        type_name = str(info["inferred_type_name"]).split("[")[0].strip().lower()
        if type_name in ("none", "optional", "any", ""):
            type_name = {bool: "bool", int: "int", float: "float", list: "list", tuple: "list", dict: "dict"}.get(
                type(default), "str"
            )
        declared[name] = NotebookParameter(name, type_name, default, info.get("help") or "")
    return declared


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def convert_value(name: str, value: Any, type_name: str) -> Any:
    """A command-line string converted to the declared type; other values are returned as given.

    ``None``/``null`` becomes None; lists are JSON (``'["error", "partial_success"]'``) or
    comma-separated (``error,partial_success``).
    """
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text in ("None", "none", "null"):
        return None
    try:
        if type_name == "int":
            number = float(text) if not re.fullmatch(r"[+-]?\d+", text) else int(text)
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            return int(number)
        if type_name == "float":
            return float(text)
        if type_name == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError
        if type_name in ("list", "tuple"):
            if text.startswith("["):
                parsed = _json_or_literal(text)
                if not isinstance(parsed, list):
                    raise ValueError
                return parsed
            return [part.strip() for part in text.split(",") if part.strip()]
        if type_name == "dict":
            parsed = _json_or_literal(text)
            if not isinstance(parsed, dict):
                raise ValueError
            return parsed
    except ValueError:
        described = {"int": "a whole number", "float": "a number", "bool": "True or False",
                     "list": 'a JSON list like ["a", "b"]', "tuple": 'a JSON list like ["a", "b"]',
                     "dict": "a JSON object"}[type_name]
        raise ParameterError(f"{name} must be {described}, got {value!r}") from None
    return value


def _json_or_literal(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        parsed = _literal(text)
        if parsed is text:
            raise ValueError(text) from None
        return parsed


@dataclass
class PreparedParameters:
    overrides: dict[str, Any]  # what papermill injects (converted values the caller gave)
    effective: dict[str, Any]  # defaults + overrides: what the run used (recorded in the index)
    options: Any = None  # the validated options (None for a notebook outside the runbook)

    @property
    def user_id(self) -> str | None:
        """The one user the run is about, if any (it goes into the run's file name)."""
        user = getattr(self.options, "user_id", None) if self.options is not None else self.effective.get("user_id")
        return user if isinstance(user, str) else None

    @property
    def worker(self) -> str | None:
        """The run's label among several running at once (``recover -p worker w2``), if any."""
        worker = getattr(self.options, "worker", None) if self.options is not None else self.effective.get("worker")
        return worker if isinstance(worker, str) else None


def prepare_parameters(
    name: str, path: Path, given: Mapping[str, Any] | None, implied: Mapping[str, Any] | None = None
) -> PreparedParameters:
    """Convert, check names and validate; raise ParameterError before anything executes.

    ``implied`` are values the runner knows (``runs_dir``: the folder it writes into), used for
    parameters the notebook declares and the caller left out.
    """
    declared = declared_parameters(path)
    given = {**{k: v for k, v in (implied or {}).items() if k in declared}, **(given or {})}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ParameterError(
            f"unknown parameter {', '.join(unknown)} for notebook {name}; "
            f"it takes: {', '.join(declared) or 'no parameters'}"
        )
    overrides = {k: convert_value(k, v, declared[k].type_name) for k, v in given.items()}
    effective = {k: p.default for k, p in declared.items()} | overrides
    options = options_for(name, **effective) if name in NOTEBOOKS else None
    return PreparedParameters(overrides, effective, options)
