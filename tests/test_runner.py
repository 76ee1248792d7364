"""The runner on tiny notebooks made in the test: parameters, outcome, files, modes, index, secrets."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import zmq
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from recovery_lib.cli import main
from recovery_lib.errors import KernelSetupError, ParameterError
from recovery_lib.files import private_dir
from recovery_lib.runbook import audit, evidence, kernels, parameters
from recovery_lib.runbook import execute as runner

PARAMS = '''
n: int = 1  # a whole number
ratio: float = 0.5
flag: bool = False
items: list = ["a"]
name: str = None
'''
GLUE = (
    "from recovery_lib.runbook.kernel import glue_report\n"
    "r = glue_report('tiny_report', {'n': n, 'ratio': ratio, 'flag': flag, 'items': items, 'name': name,\n"
    "    'types': [type(v).__name__ for v in (n, ratio, flag, items, name)]})"
)


def make_notebook(folder: Path, name: str, *cells: str, params: str = PARAMS) -> Path:
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        }
    )
    nb.cells = [new_markdown_cell(f"# {name}"), new_code_cell(params.strip(), metadata={"tags": ["parameters"]})]
    nb.cells += [new_code_cell(source) for source in cells]
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


# --- no kernel ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "type_name", "expected"),
    [
        ("5", "int", 5),
        ("5.0", "int", 5),
        ("-3", "int", -3),
        ("0.25", "float", 0.25),
        ("yes", "bool", True),
        ("False", "bool", False),
        ('["error", "partial_success"]', "list", ["error", "partial_success"]),
        ("error,partial_success", "list", ["error", "partial_success"]),
        ('{"a": 1}', "dict", {"a": 1}),
        ("None", "str", None),
        ("24h", "str", "24h"),
        (7, "int", 7),  # non-strings (the Python API) pass through
    ],
)
def test_convert_value(value: object, type_name: str, expected: object) -> None:
    assert parameters.convert_value("p", value, type_name) == expected


@pytest.mark.parametrize(("value", "type_name"), [("abc", "int"), ("1.5", "int"), ("maybe", "bool"), ("[1,", "list")])
def test_convert_value_refuses_with_the_parameter_name(value: str, type_name: str) -> None:
    with pytest.raises(ParameterError, match=r"^p must be"):
        parameters.convert_value("p", value, type_name)


def test_declared_parameters_use_annotations(tmp_path: Path) -> None:
    path = make_notebook(tmp_path, "tiny", "pass")
    declared = parameters.declared_parameters(path)
    assert {k: (p.type_name, p.default) for k, p in declared.items()} == {
        "n": ("int", 1), "ratio": ("float", 0.5), "flag": ("bool", False), "items": ("list", ["a"]),
        "name": ("str", None),
    }


def test_unknown_parameter_is_refused_before_executing(
    tmp_path: Path, runs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import papermill

    def no_kernel(*args: object, **kwargs: object) -> None:
        raise AssertionError("papermill must not be called")

    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    path = make_notebook(tmp_path, "tiny", GLUE)
    with pytest.raises(ParameterError, match="unknown parameter nn"):
        runner.run_notebook(path, {"nn": "1"}, runs_dir=runs)
    assert main(["run", str(path), "-p", "nn", "1", "--runs-dir", str(runs), "--no-progress"]) == 2
    assert "unknown parameter nn" in capsys.readouterr().err
    assert main(["run", str(path), "-p", "n", "abc", "--runs-dir", str(runs), "--no-progress"]) == 2
    assert "n must be a whole number" in capsys.readouterr().err
    assert main(["run", "no-such-notebook", "--runs-dir", str(runs)]) == 2
    assert not runs.exists() or not any(runs.iterdir())


def test_run_names_are_unique_within_a_second(runs: Path) -> None:
    private_dir(runs)
    first = evidence.reserve_stem(runs, "verify", "550e8400-e29b-41d4-a716-446655440000")
    second = evidence.reserve_stem(runs, "verify", "550e8400-e29b-41d4-a716-446655440000")
    assert first != second
    assert first.endswith("_verify_550e8400-e29b-41d4-a716-446655440000")
    assert audit.RUN_FILE.match(first + ".ipynb") and audit.RUN_FILE.match(second + ".json")
    assert mode(runs / f"{first}.ipynb") == 0o600


# --- with a kernel --------------------------------------------------------------------------------


def test_successful_run_converts_parameters_and_keeps_private_evidence(tmp_path: Path, runs: Path) -> None:
    path = make_notebook(tmp_path, "tiny", GLUE)
    result = runner.run_notebook(
        path, {"n": "5", "ratio": "2.5", "flag": "true", "items": '["x", "y"]', "name": "bob"}, runs_dir=runs
    )
    assert result.ok, result.error
    expected = {"n": 5, "ratio": 2.5, "flag": True, "items": ["x", "y"], "name": "bob"}
    assert result.report == expected | {"types": ["int", "float", "bool", "list", "str"]}
    assert json.loads(result.report_path.read_text()) == result.report
    assert result.notebook.name.endswith("_tiny.ipynb") and audit.RUN_FILE.match(result.notebook.name)
    assert result.report_path == result.notebook.with_suffix(".json")
    assert result.html_path == result.notebook.with_suffix(".html")

    assert mode(runs) == 0o700
    files = list(runs.iterdir())
    assert {p.name for p in files} == {result.notebook.name, result.report_path.name, result.html_path.name,
                                       "index.jsonl"}
    assert all(mode(p) == 0o600 for p in files), {p.name: oct(mode(p)) for p in files}

    [record] = audit.read_index(runs / "index.jsonl")
    assert record["outcome"] == "ok" and record["notebook"] == "tiny"
    assert record["parameters"] == expected
    assert record["executed_notebook_sha256"] == audit.sha256_file(result.notebook)
    assert record["report_sha256"] == audit.sha256_file(result.report_path)
    assert audit.verify_index(runs / "index.jsonl") == []


def test_failing_cell_keeps_the_notebook_and_exits_1(
    tmp_path: Path, runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_notebook(tmp_path, "broken", "x = 1", "raise ValueError('boom at step two')", GLUE)
    assert main(["run", str(path), "--runs-dir", str(runs), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "ValueError: boom at step two" in err and "raise ValueError" in err
    [record] = audit.read_index(runs / "index.jsonl")
    assert record["outcome"] == "failed" and record["report"] is None and record["report_sha256"] is None
    kept = runs / record["executed_notebook"]
    assert kept.exists() and f"kept, open it at the failing cell: {kept}" in err
    nb = nbformat.read(kept, as_version=4)
    assert nb.cells[record["failed_cell"]].source.startswith("raise ValueError")
    assert mode(kept) == 0o600
    assert audit.verify_index(runs / "index.jsonl") == []


def test_sys_exit_zero_is_not_success(tmp_path: Path, runs: Path) -> None:
    path = make_notebook(tmp_path, "quits", "import sys\nsys.exit(0)", GLUE)
    result = runner.run_notebook(path, runs_dir=runs, report_scrap="tiny_report")
    assert not result.ok
    assert result.notebook is not None and result.notebook.exists()
    assert result.report is None and result.report_path is None


def test_cell_timeout_is_a_recorded_failure(tmp_path: Path, runs: Path) -> None:
    path = make_notebook(tmp_path, "slow", "import time\ntime.sleep(60)", GLUE)
    result = runner.run_notebook(path, runs_dir=runs, timeout=3)
    assert not result.ok
    assert "time.sleep(60)" in result.error or "Timeout" in result.error, result.error
    assert result.notebook is not None and result.notebook.exists()
    [record] = audit.read_index(runs / "index.jsonl")
    assert record["outcome"] == "failed"


def test_password_printed_by_a_notebook_is_scrubbed(
    tmp_path: Path, runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = 'pw-"Sc7ub\\this'  # a quote and a backslash: escaped in JSON, percent-encoded in the URL
    encoded = "pw-%22Sc7ub%5Cthis"
    monkeypatch.setenv("DATABASE_URL", f"postgresql://app:{encoded}@db.invalid/health")
    path = make_notebook(
        tmp_path, "leaky",
        "import os\nfrom sqlalchemy.engine import make_url\n"
        "print(os.environ['DATABASE_URL'])\nprint(make_url(os.environ['DATABASE_URL']).password)",
        GLUE,
    )
    result = runner.run_notebook(path, runs_dir=runs)
    assert result.ok, result.error
    assert result.scrubbed == [result.notebook.name]
    for produced in runs.iterdir():
        text = produced.read_text()
        for form in (secret, encoded, json.dumps(secret)[1:-1], "Sc7ub"):
            assert form not in text, (produced.name, form)
    nb = nbformat.read(result.notebook, as_version=4)  # still a valid notebook
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "postgresql://app:***@db.invalid/health\n***\n" in printed
    assert audit.verify_index(runs / "index.jsonl") == []


# --- kernels: unix sockets of their own, a failed start retried, a started notebook never rerun -----


class FailsFirstStart(kernels.IPCKernelManager):
    """Refuses its first start the way a port collision does; starts normally afterwards."""

    starts = 0

    async def _async_pre_start_kernel(self, **kw: object) -> object:
        type(self).starts += 1
        if type(self).starts == 1:
            raise zmq.ZMQError(errno.EADDRINUSE)
        return await super()._async_pre_start_kernel(**kw)


class NeverStarts(kernels.IPCKernelManager):
    async def _async_pre_start_kernel(self, **kw: object) -> object:
        raise RuntimeError("Kernel didn't respond in 60 seconds")


CONNECTION = (
    "import json\nfrom ipykernel import get_connection_info\n"
    "from recovery_lib.runbook.kernel import glue_report\n"
    "info = json.loads(get_connection_info())\n"
    "glue_report('connection', {'transport': info['transport'], 'ip': info['ip']})"
)


@pytest.fixture()
def kernel_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "k"
    monkeypatch.setenv(kernels.ENV_DIR, str(folder))
    monkeypatch.setattr(runner, "KERNEL_RETRY_DELAYS", (0.1, 0.1))
    return folder


def test_every_run_talks_to_its_kernel_over_private_unix_sockets(tmp_path: Path, runs: Path, kernel_dir: Path) -> None:
    path = make_notebook(tmp_path, "where", CONNECTION, params="x = 1")
    result = runner.run_notebook(path, runs_dir=runs)
    assert result.ok, result.error
    assert result.report["transport"] == "ipc"  # no TCP port: nothing to collide on, nothing unencrypted
    assert result.report["ip"].startswith(f"{kernel_dir}/k")
    assert mode(kernel_dir) & 0o777 == 0o700
    assert list(kernel_dir.iterdir()) == []  # sockets and connection file removed at shutdown
    [record] = audit.read_index(runs / "index.jsonl")
    assert (record["kernel_start_attempts"], record["kernel_start_errors"]) == (1, [])


def test_a_kernel_that_fails_to_start_is_started_again_and_the_retry_is_recorded(
    tmp_path: Path, runs: Path, kernel_dir: Path
) -> None:
    path = make_notebook(tmp_path, "tiny", GLUE)
    FailsFirstStart.starts = 0
    result = runner.run_notebook(path, {"n": "2"}, runs_dir=runs, kernel_manager_class=FailsFirstStart)
    assert result.ok, result.error
    assert result.report["n"] == 2 and result.kernel_start_attempts == 2
    [record] = audit.read_index(runs / "index.jsonl")
    assert record["outcome"] == "ok" and record["kernel_start_attempts"] == 2
    assert record["kernel_start_errors"] == ["ZMQError: Address already in use"]
    assert audit.verify_index(runs / "index.jsonl") == []


def test_a_kernel_that_never_starts_fails_after_3_attempts(tmp_path: Path, runs: Path, kernel_dir: Path) -> None:
    path = make_notebook(tmp_path, "tiny", GLUE)
    result = runner.run_notebook(path, runs_dir=runs, kernel_manager_class=NeverStarts)
    assert not result.ok
    assert result.error == (
        "the kernel did not start after 3 attempt(s): RuntimeError: Kernel didn't respond in 60 seconds"
    )
    [record] = audit.read_index(runs / "index.jsonl")
    assert record["outcome"] == "failed" and record["kernel_start_attempts"] == 3
    assert len(record["kernel_start_errors"]) == 2


def test_a_notebook_whose_first_cell_ran_is_never_run_again(tmp_path: Path, runs: Path, kernel_dir: Path) -> None:
    marker = tmp_path / "executions.txt"
    # The cell does something (a database write, in a real notebook), then its kernel dies.
    path = make_notebook(tmp_path, "dies", f"open({str(marker)!r}, 'a').write('ran\\n')\nimport os\nos._exit(1)")
    result = runner.run_notebook(path, runs_dir=runs)
    assert not result.ok
    assert marker.read_text() == "ran\n"
    [record] = audit.read_index(runs / "index.jsonl")
    assert record["outcome"] == "failed" and record["kernel_start_attempts"] == 1


def test_three_runs_started_at_once_each_use_their_own_sockets(tmp_path: Path, kernel_dir: Path) -> None:
    """Separate processes in one working folder: the plain IPC manager would share ./kernel-ipc-N."""
    path = make_notebook(tmp_path, "where", CONNECTION, params="x = 1")
    runs = tmp_path / "shared-runs"
    env = {**os.environ, kernels.ENV_DIR: str(kernel_dir)}
    command = [sys.executable, "-m", "recovery_lib", "run", str(path), "--runs-dir", str(runs), "--no-progress"]
    procs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in outputs]
    for _, err in outputs:
        assert "without encryption" not in err and "ZMQError" not in err and "Invalid Signature" not in err
    records = audit.read_index(runs / "index.jsonl")
    assert [r["outcome"] for r in records] == ["ok"] * 3
    sockets = {json.loads((runs / r["report"]).read_text())["ip"] for r in records}
    assert len(sockets) == 3
    assert audit.verify_index(runs / "index.jsonl") == []
    assert list(kernel_dir.iterdir()) == [] and not list(tmp_path.glob("kernel-ipc*"))


def test_files_of_dead_kernel_owners_are_swept_and_the_rest_kept(tmp_path: Path) -> None:
    folder = private_dir(tmp_path / "k")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = int(gone.stdout), os.getpid()
    names = [f"k{dead}-0123456789ab.json", f"k{dead}-0123456789ab-ipc-1", f"k{alive}-0123456789ab.json",
             "notes.txt"]
    for name in names:
        (folder / name).write_text("")
    assert kernels.sweep_stale(folder) == sorted(names[:2])
    assert sorted(p.name for p in folder.iterdir()) == sorted(names[2:])


def test_a_kernel_folder_too_deep_for_unix_sockets_is_refused_before_anything_runs(
    tmp_path: Path, runs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(kernels.ENV_DIR, str(tmp_path / ("d" * 90)))
    path = make_notebook(tmp_path, "tiny", GLUE)
    with pytest.raises(KernelSetupError, match="set RECOVERY_KERNEL_DIR to a shorter folder"):
        runner.run_notebook(path, runs_dir=runs)
    assert main(["run", str(path), "--runs-dir", str(runs), "--no-progress"]) == 2
    assert "RECOVERY_KERNEL_DIR" in capsys.readouterr().err
    assert not runs.exists() or not any(runs.iterdir())


def test_run_names_carry_the_worker_label(runs: Path) -> None:
    private_dir(runs)
    assert evidence.reserve_stem(runs, "recover", None, worker="w2").endswith("_recover_w2")


def test_recovery_project_root_points_an_installed_package_at_a_checkout(tmp_path: Path) -> None:
    """A worker host with the package installed (not editable) finds notebooks and runs/ in the checkout."""
    code = ("from recovery_lib.runbook.parameters import NOTEBOOKS_DIR; from recovery_lib.runbook.audit import "
            "DEFAULT_RUNS_DIR; print(NOTEBOOKS_DIR); print(DEFAULT_RUNS_DIR)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "RECOVERY_PROJECT_ROOT": str(tmp_path)})
    assert done.stdout.split() == [str(tmp_path / "notebooks"), str(tmp_path / "runs")]


def test_a_kernel_setup_leaves_out_the_iri_grammar_and_notebooks_still_validate() -> None:
    """setup_notebook() keeps jsonschema's optional IRI check out of the kernel (1.6 s of grammar at import)."""
    code = (
        "import sys\n"
        "from recovery_lib.runbook.kernel import setup_notebook\n"
        "setup_notebook()\n"
        "import nbformat\n"
        "from nbformat.v4 import new_code_cell, new_notebook\n"
        "nbformat.validate(new_notebook(cells=[new_code_cell('1 + 1')]))\n"
        "print(sys.modules['rfc3987_syntax'], 'nbformat' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["None", "True"]
