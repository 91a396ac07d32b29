"""The proxy's way to a display: a socket straight to it, or a channel of its host's one SSH connection.

A display on a remote host's loopback or unix socket (an endpoint with an `ssh` route) is reached
through OpenSSH's connection multiplexing: one master connection per route (user, host, port, key,
known hosts, ssh command) logs in once (`-M -N -f`) and, with ControlPersist, stays in the background
after its last console, and serves every proxy process. Each console is one channel of that
connection:

- a TCP display: a mux client `ssh -W host:port` on one end of a socketpair, ended with the console;
- a unix-socket display: a forward the master listens for (`-O forward -L local:remote`), connected to
  once and cancelled at once (the channel opened through it stays). OpenSSH 9.2's `-W` takes only
  host:port, and a forward needs nothing on the host, where `nc -U` may be missing.

The host key is checked as the route's ssh command checks it (known_hosts, StrictHostKeyChecking);
nothing here turns that off (SECURITY.md rule 12).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from domains import virt

from . import conf

logger = logging.getLogger(__name__)
TIMEOUT = 20  # seconds a login, a control command or a direct connection may take
# ssh binds a master's socket at "<ControlPath>.<16 random characters>" before renaming it; sun_path
# holds 107 bytes and a NUL.
_MASTER_SUFFIX = 17
_MAX_SOCKET_PATH = 107


class TunnelError(OSError):
    """No way to the display through its host's SSH connection; the message is ssh's own reason."""


def open_display(endpoint: virt.GraphicsEndpoint) -> contextlib.AbstractContextManager[socket.socket]:
    """A connected socket to the display, for the relay; leaving the block closes it and its SSH channel."""
    if endpoint.ssh is None:
        return _closing(_connect_direct(endpoint))
    if endpoint.socket:
        return _closing(_connect_forwarded(endpoint.ssh, endpoint.socket))
    return _stdio_channel(endpoint.ssh, endpoint.address, endpoint.port or 0)


def _connect_direct(endpoint: virt.GraphicsEndpoint) -> socket.socket:
    if endpoint.socket:
        return _connect_unix(endpoint.socket)
    sock = socket.create_connection((endpoint.address, endpoint.port or 0), timeout=TIMEOUT)
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_TCP, socket.TCP_NODELAY, 1)
    return sock


def _connect_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def _closing(sock: socket.socket) -> Iterator[socket.socket]:
    try:
        yield sock
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@contextlib.contextmanager
def _stdio_channel(route: virt.SshRoute, address: str, port: int) -> Iterator[socket.socket]:
    control = _master(route)
    ours, theirs = socket.socketpair()
    target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    # A mux client whose master is gone would log in on its own: a proxy command that fails forbids it.
    # Its complaints go to the proxy's log (stderr is inherited).
    command = _ssh(route, control, "-o", "ControlMaster=no", "-o", "ProxyCommand=false", "-W", target)
    try:
        with theirs:
            child = subprocess.Popen(command, stdin=theirs.fileno(), stdout=theirs.fileno())
    except OSError:
        ours.close()
        raise
    try:
        with _closing(ours):
            yield ours
    finally:
        child.terminate()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _connect_forwarded(route: virt.SshRoute, remote_path: str) -> socket.socket:
    control = _master(route)
    # In the private control directory: only this user can connect to it in the moment it exists.
    local = control.with_name(f"{control.stem}.{secrets.token_hex(8)}.fwd")
    forward = f"{local}:{remote_path}"
    _control(route, control, "forward", "-L", forward)
    try:
        return _connect_unix(str(local))
    finally:
        status, reason = _run(_ssh(route, control, "-O", "cancel", "-L", forward))
        if status != 0:  # the master keeps listening there until it exits; nobody else can connect
            logger.warning("cancelling the SSH forward to %s failed: %s", route.host, reason)
        local.unlink(missing_ok=True)


def _master(route: virt.SshRoute) -> Path:
    """The control socket of the route's master connection, logged in now if none answers."""
    control = _control_path(route)
    if _run(_ssh(route, control, "-O", "check"))[0] != 0:
        # One login per route however many consoles open at once, in however many processes.
        with control.with_suffix(".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _run(_ssh(route, control, "-O", "check"))[0] != 0:
                status, reason = _run(
                    _ssh(
                        route,
                        control,
                        "-M",
                        "-N",
                        "-f",
                        "-o",
                        f"ControlPersist={conf.ssh_control_persist_seconds()}",
                        "-o",
                        "ServerAliveInterval=15",
                        "-o",
                        "ServerAliveCountMax=3",
                    )
                )
                if status != 0:
                    raise TunnelError(f"SSH login to {route.host} failed: {reason}")
    return control


def _control_path(route: virt.SshRoute) -> Path:
    directory = conf.ssh_control_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # whoever reaches a control socket uses the login behind it
    control = directory / f"{hashlib.sha256(route.key.encode()).hexdigest()[:16]}.sock"
    if len(os.fsencode(control)) + _MASTER_SUFFIX > _MAX_SOCKET_PATH:
        raise TunnelError(f"the SSH control directory {directory} is too long a path for a unix socket")
    return control


def _control(route: virt.SshRoute, control: Path, command: str, *args: str) -> None:
    status, reason = _run(_ssh(route, control, "-O", command, *args))
    if status != 0:
        raise TunnelError(f"SSH {command} on the connection to {route.host} failed: {reason}")


def _ssh(route: virt.SshRoute, control: Path, *options: str) -> list[str]:
    """The route's ssh command line on the master's control socket."""
    return route.command_line("-S", str(control), *options)


def _run(args: list[str]) -> tuple[int, str]:
    """ssh's exit status and its last complaint. Its errors go to a file, not a pipe: a master that
    forks into the background would keep a pipe open."""
    with tempfile.TemporaryFile() as errors:
        try:
            status = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                timeout=TIMEOUT,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            return -1, f"no answer within {TIMEOUT} s"
        errors.seek(0)
        lines = [line.strip() for line in errors.read().decode(errors="replace").splitlines() if line.strip()]
    return status, lines[-1] if lines else f"exit status {status}"
