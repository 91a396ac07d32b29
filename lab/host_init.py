"""The first process of a lab host, run by unshare inside the host's new namespaces.

It bind-mounts the host's directories, sets its hostname, starts its daemons, then stays in the
background as their child subreaper: the daemons and the QEMU processes they start are reaped as
soon as they exit. libvirt waits for a killed QEMU to disappear, so a PID 1 that reaps orphans
slowly, or never, would otherwise stall every destroy, shutdown and migration.

Standalone (the standard library only), as it runs before anything else in the namespace.
Argument: a JSON object {"hostname": str, "binds": [[source, target], ...], "commands": [[arg, ...], ...]},
optionally with "pid_file": str (where to write its own pid) and "hold": true (stay until SIGTERM even
with no child: what keeps the namespaces of the lab's bridge, where nothing else runs).
Exits 0 once every command succeeded, with the subreaper left running until its last child exits.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> int:
    plan = json.loads(sys.argv[1])
    ready_read, ready_write = os.pipe()
    if os.fork() > 0:  # the caller waits for this process, which waits for the set-up
        os.close(ready_write)
        return 0 if os.read(ready_read, 1) == b"0" else 1
    os.close(ready_read)
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stays until its children are gone
    if "pid_file" in plan:
        with open(plan["pid_file"], "w") as pid_file:
            pid_file.write(f"{os.getpid()}\n")
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("cannot become a child subreaper", file=sys.stderr)
        os.write(ready_write, b"1")
        return 1
    try:
        for source, target in plan["binds"]:
            subprocess.run(["mount", "--bind", source, target], check=True)
        subprocess.run(["hostname", plan["hostname"]], check=True)
        for command in plan["commands"]:
            subprocess.run(command, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"lab host {plan['hostname']}: {error}", file=sys.stderr)
        os.write(ready_write, b"1")
        return 1
    _detach_from_caller()
    os.write(ready_write, b"0")
    os.close(ready_write)
    if plan.get("hold"):
        _hold()
    _reap_until_alone()
    return 0


def _hold() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        signal.pause()


def _detach_from_caller() -> None:
    """The caller reads our output until it closes: hand it /dev/null instead."""
    null = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(null, descriptor)
    os.close(null)


def _reap_until_alone() -> None:
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


if __name__ == "__main__":
    sys.exit(main())
