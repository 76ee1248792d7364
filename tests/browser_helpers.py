"""Headless Chromium without network, for the archive tests: open a page, evaluate in it, and record
every request the page (and Chromium itself) made. tests/chart_checks.py counts the charts.

Only the standard library and Debian's ``chromium``: Chromium is driven over the DevTools protocol
on a pipe (``--remote-debugging-pipe``: NUL-terminated JSON, commands on the child's fd 3, replies
and events on its fd 4), so there is no debugging port, no websocket and no browser download.

"No request left the machine" is shown three ways:

1. enforced: Chromium runs in a network namespace of its own (``unshare --net``: a loopback that is
   down) or joins the JupyterLab server's (``nsenter --net=/proc/PID/ns/net``), so nothing can leave;
2. detected in the page: every ``Network.requestWillBeSent`` / ``webSocketCreated`` of the page and
   of every iframe and worker it starts (auto-attached before they run);
3. detected in the browser: Chromium's net log (``--log-net-log``), every URL request and DNS lookup
   of its network service, including Chromium's own that no page made.

The namespace alone would hide that a page tried (and then drew less); the page events do not see
Chromium's own traffic; the net log does not say which page asked. Together: nobody tried, and nobody
could have. Where ``unshare --net`` is not permitted (an unprivileged container) 2 and 3 still fail
the test on any request; a warning says that nothing was blocked.

Every process is started in a session of its own and stopped by its pid (SIGTERM, then SIGKILL to
that process group); each launch puts a unique marker in the environment, inherited by every
descendant, so :func:`assert_none_left` finds stragglers by that marker and by nothing broader.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# The binary: Debian's /usr/bin/chromium wrapper sources /etc/chromium.d (extensions, API keys).
CHROMIUM = Path("/usr/lib/chromium/chromium")
MARK_VARIABLE = "RECOVERY_BROWSER_TEST_RUN"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--window-size=1280,2400",
    # Chromium 156 still asks the network on its own despite the flags above: the network-time
    # tracker (clients2.google.com/time) and autofill's form queries on pages with inputs such as
    # JupyterLab's (content-autofill.googleapis.com) stop with these features; an on-demand
    # component check (update.googleapis.com) and the sign-in cookie check (accounts.google.com)
    # have no switch, so they are sent to a dead loopback port (discard, 9). A later Chromium may
    # add another: the net log check then fails and names it.
    "--disable-features=NetworkTimeServiceQuerying,AutofillServerCommunication",
    "--component-updater=url-source=http://127.0.0.1:9/",
    "--gaia-url=http://127.0.0.1:9/",
]
LOCAL_SCHEMES = {"file", "data", "blob", "about", "chrome", "chrome-error", "devtools"}

# Run inside a fresh network namespace: bring its loopback up (no iproute2 needed), then exec argv[1:].
LO_UP_EXEC = r"""
import fcntl, os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, struct.pack("16sh", b"lo", 0)))[1]  # SIOCGIFFLAGS
fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", flags | 0x1))  # SIOCSIFFLAGS |= IFF_UP
s.close()
os.execvp(sys.argv[1], sys.argv[1:])
"""


@cache
def netns_available() -> bool:
    """Whether this process may create a network namespace (root, or CAP_SYS_ADMIN)."""
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def warn_not_isolated() -> None:
    warnings.warn("unshare --net is not permitted here: requests are detected (page events, net log) "
                  "but not blocked", stacklevel=2)


# --- processes: started here, stopped here, by pid ----------------------------------------------


def new_mark() -> str:
    return f"{os.getpid()}-{secrets.token_hex(8)}"


def marked_env(mark: str, **extra: str) -> dict[str, str]:
    return {**os.environ, MARK_VARIABLE: mark, **extra}


def _marked_pids(mark: str) -> list[int]:
    needle = f"{MARK_VARIABLE}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    found.append(int(entry))
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return found


def stop(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL, to ``proc``'s process group (it was started in a session of its own)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue


def assert_none_left(what: str, mark: str, wait: float = 10) -> None:
    """Children outlive their parent briefly (Chromium's ~1 s): wait, then kill stragglers by pid and fail."""
    deadline = time.monotonic() + wait
    while (left := _marked_pids(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"{what} left processes behind: {left}"


# --- Chromium over the DevTools protocol on a pipe ----------------------------------------------


class CDPError(RuntimeError):
    """Chromium did not answer, answered with an error, or went away."""


@dataclass
class PageLog:
    """What one page and the targets it started did."""

    requests: list[str] = field(default_factory=list)  # every URL asked for (and websockets opened)
    failed: dict[str, str] = field(default_factory=dict)  # URL -> net error (net::ERR_...)
    exceptions: list[str] = field(default_factory=list)  # uncaught JavaScript exceptions
    loaded: bool = False  # Page.loadEventFired of the page itself
    _urls: dict[str, str] = field(default_factory=dict)  # requestId -> URL


_AUTO_ATTACH = {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True}


def _high_fd(fd: int) -> int:
    """``fd`` moved to >= 10, so that putting the pipe on 3 and 4 in the child never overwrites it."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Chromium:
    """One headless Chromium with a fresh profile; ``prefix`` runs it in a namespace (unshare / nsenter)."""

    def __init__(self, prefix: list[str]) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="recovery-chromium-"))
        self.netlog = self.profile / "netlog.json"
        child_in, self._to_child = map(_high_fd, os.pipe())
        self._from_child, child_out = map(_high_fd, os.pipe())
        # bash puts the pipe on the fds the protocol expects (3 in, 4 out) and execs the rest:
        # no preexec_fn, which is unsafe once threads exist.
        on_fds = ["bash", "-c", f'exec 3<&{child_in} 4>&{child_out} {child_in}<&- {child_out}>&-; exec "$@"', "-"]
        argv = [*on_fds, *prefix, str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                f"--log-net-log={self.netlog}", "--remote-debugging-pipe", "about:blank"]
        self.mark = new_mark()
        with open(self.profile / "stderr.txt", "wb") as stderr:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                         env=marked_env(self.mark), pass_fds=(child_in, child_out),
                                         start_new_session=True)
        os.close(child_in)
        os.close(child_out)
        self._buffer = b""
        self._closed = False
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.logs: dict[str, PageLog] = {}  # session id of a page -> what it did
        self._page_of: dict[str, str] = {}  # session id of any target -> session id of its page
        self.send("Browser.getVersion", timeout=30)

    # transport
    def pump(self, timeout: float) -> None:
        """Read what Chromium sent within ``timeout`` s: replies are kept, events logged."""
        ready, _, _ = select.select([self._from_child], [], [], max(timeout, 0))
        if ready:
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise CDPError(f"chromium closed the pipe (exit {self.proc.poll()}): "
                               f"{(self.profile / 'stderr.txt').read_text(errors='replace')[-2000:]}")
            self._buffer += chunk
        while b"\0" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\0", 1)
            message = json.loads(raw)
            if "id" in message:
                self._replies[message["id"]] = message
            else:
                self._event(message)

    def _write(self, method: str, params: dict[str, Any] | None, session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        return self._next_id

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 20) -> dict[str, Any]:
        ident = self._write(method, params, session)
        deadline = time.monotonic() + timeout
        while ident not in self._replies:
            if time.monotonic() > deadline:
                raise CDPError(f"no reply to {method} within {timeout} s")
            self.pump(deadline - time.monotonic())
        reply = self._replies.pop(ident)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _event(self, message: dict[str, Any]) -> None:
        method, params, session = message.get("method"), message.get("params", {}), message.get("sessionId")
        page = self._page_of.get(session or "")
        if method == "Target.attachedToTarget" and page:
            # an iframe or worker of one of our pages, paused until it is instrumented like its page
            child = params["sessionId"]
            self._page_of[child] = page
            for command, args in (("Network.enable", {}), ("Runtime.enable", {}),
                                  ("Target.setAutoAttach", _AUTO_ATTACH), ("Runtime.runIfWaitingForDebugger", {})):
                self._write(command, args, child)  # nobody waits for these replies
            return
        log = self.logs.get(page or "")
        if log is None:
            return
        if method == "Network.requestWillBeSent":
            log.requests.append(params["request"]["url"])
            log._urls[params["requestId"]] = params["request"]["url"]
        elif method == "Network.loadingFailed":
            log.failed[log._urls.get(params["requestId"], "?")] = params.get("errorText", "")
        elif method == "Network.webSocketCreated":
            log.requests.append(params["url"])
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            log.exceptions.append(str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Page.loadEventFired" and session == page:
            log.loaded = True

    # pages
    def open(self, url: str) -> str:
        """A new tab, instrumented before it loads anything, navigated to ``url``; its session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self._page_of[session] = session
        self.logs[session] = PageLog()
        for command, args in (("Network.enable", {}), ("Page.enable", {}), ("Runtime.enable", {}),
                              ("Target.setAutoAttach", _AUTO_ATTACH)):
            self.send(command, args, session)
        self.send("Page.navigate", {"url": url}, session)
        return session

    def evaluate(self, session: str, expression: str, await_promise: bool = False) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": await_promise}, session)
        if "exceptionDetails" in result:
            raise CDPError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def poll(self, session: str, expression: str, done: Callable[[Any, PageLog], bool], timeout: float) -> Any:
        """Evaluate ``expression`` every 0.2 s until ``done(value, page log)`` or ``timeout``; the last value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(session, expression)
            if done(value, self.logs[session]) or time.monotonic() > deadline:
                return value
            self.pump(0.2)

    def close(self) -> None:
        """Browser.close (which also completes the net log); the process group killed if that fails."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.proc.poll() is None:
                self.send("Browser.close", timeout=10)
            self.proc.wait(timeout=10)
        except (CDPError, OSError, subprocess.TimeoutExpired):
            stop(self.proc)
        finally:
            os.close(self._to_child)
            os.close(self._from_child)


@contextmanager
def chromium(prefix: list[str] | None = None) -> Iterator[Chromium]:
    """A Chromium in its own network namespace, or in ``prefix``'s; closed, checked gone, profile removed."""
    if prefix is None:
        prefix = ["unshare", "--net"] if netns_available() else []
    browser = Chromium(prefix)
    try:
        yield browser
    finally:
        browser.close()
        try:
            assert_none_left("chromium", browser.mark)
        finally:
            shutil.rmtree(browser.profile, ignore_errors=True)


# --- what left (or tried to leave) the machine --------------------------------------------------


def netlog_urls(path: Path) -> list[str]:
    """Every URL and DNS name (``dns://name``) in a net log; a log cut short by a crash is closed here."""
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = json.loads(text.rstrip().rstrip(",") + "]}")
    found = []
    for event in data.get("events", []):
        params = event.get("params") or {}
        for key in ("url", "original_url", "location"):
            if isinstance(params.get(key), str) and params[key]:
                found.append(params[key])
        host = params.get("host")
        if isinstance(host, str) and host:  # DNS: "name", sometimes "scheme://name:port"
            found.append(f"dns://{urlsplit(host).hostname if '://' in host else host}")
    return found


def _loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def left_machine(urls: list[str]) -> list[str]:
    """The URLs that would leave this machine: neither a local scheme (file:, data:, ...) nor loopback."""
    return sorted({u for u in urls if urlsplit(u).scheme not in LOCAL_SCHEMES and not _loopback(urlsplit(u).hostname)})


def outside(urls: list[str], origins: tuple[str, ...] = ()) -> list[str]:
    """Stricter, for what a page asked: anything but local schemes and ``origins`` (loopback included)."""
    return sorted({u for u in urls if urlsplit(u).scheme not in LOCAL_SCHEMES
                   and not any(u == o or u.startswith(o.rstrip("/") + "/") for o in origins)})
