"""A throwaway JupyterLab 4 for the archive tests: 127.0.0.1 only, a random token, no kernel, in a
network namespace of its own, stopped by its pid.

The server is started as ``unshare --net python -c <loopback up; exec> jupyter lab ...`` and
Chromium joins that namespace by the server's pid (``nsenter --net=/proc/PID/ns/net``): the two
talk over the namespace's loopback and nothing else exists. The test process never talks to the
server over the network: readiness is the ``jpserver-<pid>.json`` the server writes once it
listens (with the port it picked, ``--ServerApp.port=0``).

No kernel: ``--KernelSpecManager.allowed_kernelspecs`` names no existing kernel, so lab has none
to start and renders the notebook from its stored outputs alone, as someone opening the evidence a
year later would. papermill's output is unsigned, so untrusted; plotly's mime renderer draws
anyway (untrusted HTML would not run scripts, which is why the notebooks carry the plotly
mimetype).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from browser_helpers import LO_UP_EXEC, assert_none_left, marked_env, netns_available, new_mark, stop

SETTINGS = {  # throwaway user settings (JUPYTERLAB_SETTINGS_DIR)
    # every cell attached and drawn, whatever the viewport (the default may skip off-screen work)
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # never write the evidence back (lab marks a notebook dirty on open)
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    # no news toast, no update check
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}

@dataclass
class Lab:
    proc: subprocess.Popen[bytes]
    root: Path  # what the server serves
    state: Path  # its config, data, runtime, settings and log
    token: str
    isolated: bool  # in a network namespace of its own
    url: str = ""  # http://127.0.0.1:PORT once ready

    def wait_ready(self, timeout: float = 60) -> str:
        """The server's URL once it listens."""
        info = self.state / "runtime" / f"jpserver-{self.proc.pid}.json"
        deadline = time.monotonic() + timeout
        while not info.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jupyter lab did not start:\n{(self.state / 'lab.log').read_text()[-3000:]}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{json.loads(info.read_text())['port']}"
        return self.url

    def browser_prefix(self) -> list[str]:
        """How a Chromium joins the server's network (and only it)."""
        return ["nsenter", f"--net=/proc/{self.proc.pid}/ns/net"] if self.isolated else []


@contextmanager
def jupyter_lab(root: Path) -> Iterator[Lab]:
    """JupyterLab serving ``root``, starting (call ``wait_ready``); stopped by pid, nothing left behind."""
    state = Path(tempfile.mkdtemp(prefix="recovery-lab-"))
    for name, value in SETTINGS.items():
        target = state / "settings" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value))
    token = secrets.token_hex(24)
    mark = new_mark()
    env = marked_env(mark, JUPYTER_CONFIG_DIR=str(state / "config"), JUPYTER_RUNTIME_DIR=str(state / "runtime"),
                     JUPYTER_DATA_DIR=str(state / "data"), JUPYTERLAB_SETTINGS_DIR=str(state / "settings"),
                     JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"), IPYTHONDIR=str(state / "ipython"))
    env.pop("JUPYTER_TOKEN", None)
    argv = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
            "--ServerApp.allow_root=True",  # refused as root otherwise; no effect for other users
            "--ServerApp.terminals_enabled=False", "--ServerApp.log_level=WARN",
            "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--KernelSpecManager.allowed_kernelspecs=no-kernel-for-the-archive-test"]
    isolated = netns_available()
    if isolated:
        argv = ["unshare", "--net", sys.executable, "-c", LO_UP_EXEC, *argv]
    with open(state / "lab.log", "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=root,
                                start_new_session=True)
    try:
        yield Lab(proc, root, state, token, isolated)
    finally:
        stop(proc)  # SIGTERM: the server exits (there is no kernel to stop); SIGKILL if it hangs
        try:
            assert_none_left("jupyter lab", mark)
        finally:
            shutil.rmtree(state, ignore_errors=True)
