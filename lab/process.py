"""Running commands and tracking the lab's processes by pid and namespace."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path


class LabError(RuntimeError):
    """The lab could not be brought to the requested state."""


def run(command: Sequence[str], *, cwd: Path | None = None, timeout: float = 120) -> str:
    """Run a command and return its standard output; raise LabError with its output if it fails."""
    try:
        completed = subprocess.run(
            command, cwd=cwd, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as error:
        raise LabError(f"{' '.join(command)} did not finish within {timeout} s") from error
    if completed.returncode != 0:
        output = (completed.stderr or completed.stdout).decode(errors="replace").strip()
        raise LabError(f"{' '.join(command)} failed ({completed.returncode}): {output}")
    return completed.stdout.decode()


HOST_INIT = Path(__file__).with_name("host_init.py")


def start_host_init(plan: Mapping[str, object], *, network: bool = False) -> None:
    """Run host_init.py with plan in new mount and UTS namespaces, and a new network namespace if asked."""
    namespaces = ["--mount", "--uts", *(["--net"] if network else [])]
    run(["unshare", *namespaces, "--propagation", "private", sys.executable, str(HOST_INIT), json.dumps(plan)])


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on path, so concurrent lab commands run one after the other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_alive(pid: int) -> bool:
    """Whether pid is a process that has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def namespace_of(pid: int) -> str | None:
    """The mount and UTS namespace ids of pid, together naming a lab host's namespace."""
    try:
        return f"{os.readlink(f'/proc/{pid}/ns/mnt')} {os.readlink(f'/proc/{pid}/ns/uts')}"
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def processes_in_namespace(namespace: str) -> list[int]:
    return [
        pid
        for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit())
        if pid != os.getpid() and namespace_of(pid) == namespace and is_alive(pid)
    ]


def terminate(pids: Iterable[int], timeout: float = 15) -> None:
    """Ask pids to exit, then kill those still there after timeout; return once all are gone."""
    remaining = [pid for pid in pids if is_alive(pid)]
    _signal_all(remaining, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [pid for pid in remaining if is_alive(pid)]
    _signal_all(remaining, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = [pid for pid in remaining if is_alive(pid)]
    if remaining:
        raise LabError(f"processes {remaining} survived SIGKILL")


def _signal_all(pids: Iterable[int], signal_number: signal.Signals) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal_number)
