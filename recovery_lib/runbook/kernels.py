"""The kernel every run gets: ZeroMQ over unix sockets (IPC), each kernel at its own short private path.

Why not the default TCP transport: papermill picks five free TCP ports, closes them and lets the
kernel bind them a moment later, so kernels started at the same moment on one host can take
each other's ports (``ZMQError: Address already in use``, papermill#511), and every kernel
prints ``Kernel is running over TCP without encryption``. Over IPC no port is involved. The
plain ``transport = "ipc"`` manager is not enough: its socket prefix defaults to the relative
``kernel-ipc``, so kernels started in one working directory bind the same ``./kernel-ipc-1..5``
and read each other's messages. :class:`IPCKernelManager` names each kernel's connection file
and sockets after its owner's pid and a random id, in :func:`runtime_dir`:

* ``$RECOVERY_KERNEL_DIR``, else ``<tmp>/recovery-kernels-<uid>``: short on purpose, a unix
  socket path has at most 107 bytes (:data:`SUN_PATH_MAX`); mode 0700, since whoever can reach
  the sockets can run code in the kernel (the connection file's key signs the messages);
* ``k<pid>-<12 hex>.json`` and ``k<pid>-<12 hex>-ipc-1..5``, removed by jupyter_client when the
  kernel shuts down; those of a process that no longer exists (SIGKILLed) are swept by
  :func:`sweep_stale` before each kernel start.

    >>> pm.execute_notebook(src, out, kernel_manager_class=IPCKernelManager)
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any

import traitlets
from jupyter_client.manager import AsyncKernelManager

from recovery_lib.errors import KernelSetupError

ENV_DIR = "RECOVERY_KERNEL_DIR"
SUN_PATH_MAX = 107  # Linux: sun_path is 108 bytes, including the terminating NUL
_OWNED = re.compile(r"^k(\d+)-[0-9a-f]{12}(\.json|-ipc-\d+)$")


def runtime_dir() -> Path:
    """The folder for kernels' connection files and sockets, created 0700.

    Raises :class:`KernelSetupError` when someone else owns it or it is too deep for the
    socket paths; the runner checks it before it reserves a run's name.
    """
    default = Path(tempfile.gettempdir()) / f"recovery-kernels-{os.getuid()}"
    folder = Path(os.environ.get(ENV_DIR, "").strip() or default).absolute()
    longest = len(str(_prefix(folder, pid=9_999_999)).encode()) + len("-ipc-99999")  # pids have at most 7 digits
    if longest > SUN_PATH_MAX:
        raise KernelSetupError(
            f"kernel socket paths under {folder} would be up to {longest} bytes, more than a unix socket "
            f"allows ({SUN_PATH_MAX}): set {ENV_DIR} to a shorter folder"
        )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        # A folder planted in a shared /tmp by another user would let them reach the kernels.
        raise KernelSetupError(f"the kernel folder {folder} is not a folder owned by this user; set {ENV_DIR}")
    if info.st_mode & 0o777 != 0o700:  # (jupyter_client adds the sticky bit: keeps tmp cleaners away)
        os.chmod(folder, 0o700)
    return folder


def _prefix(folder: Path, pid: int | None = None) -> Path:
    return folder / f"k{os.getpid() if pid is None else pid}-{uuid.uuid4().hex[:12]}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_stale(folder: Path) -> list[str]:
    """Remove the connection files and sockets of kernel owners that no longer run; return their names.

    An owner killed with SIGKILL cannot clean up; its kernel exits too (ipykernel watches its
    parent), so files whose pid is gone are dead. Other files are left alone.
    """
    removed = []
    for entry in folder.iterdir():
        match = _OWNED.match(entry.name)
        if match and not _alive(int(match.group(1))):
            try:
                entry.unlink()
                removed.append(entry.name)
            except FileNotFoundError:  # another process swept it first
                pass
    return sorted(removed)


class IPCKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel listens on its own unix sockets in :func:`runtime_dir`."""

    transport = traitlets.Unicode("ipc")

    async def _async_pre_start_kernel(self, **kw: Any) -> Any:
        folder = runtime_dir()
        sweep_stale(folder)
        prefix = _prefix(folder)
        # Set before jupyter_client reads ip: its default would be the relative "kernel-ipc".
        self.connection_file = f"{prefix}.json"
        self.ip = f"{prefix}-ipc"
        return await super()._async_pre_start_kernel(**kw)
