"""Helpers shared by the tests and the benchmarks; the running portal never imports this module.

What they share: a free loopback port, a server process waited for and stopped, the environment of a
portal in its own var dir, a login session made from a shell, and the browser's side of a live-state
websocket.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import functools
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Settings a developer's shell may carry: a portal started by a test or benchmark gets its own instead.
_INHERITED_SETTINGS = re.compile(r"^(VMPORTAL_|DJANGO_|DATABASE_URL$|REDIS_URL$)")


def portal_env(var_dir: Path, **settings: str) -> dict[str, str]:
    """The environment of a portal whose database, sessions and static files live in var_dir."""
    env = {name: value for name, value in os.environ.items() if not _INHERITED_SETTINGS.match(name)}
    env.update({"VMPORTAL_VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "vmportal.settings",
                "VMPORTAL_ALLOWED_HOSTS": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1"})
    env.update(settings)
    return env


REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _prepared_var_dir() -> Path:
    """A var dir migrated and collected once per process, for every portal a test starts to copy.

    `migrate` takes 10 s on an idle CI machine (40 s on a busy one) and `collectstatic` a few more, and
    both give every portal the same database and files; a copy takes milliseconds.
    """
    template = Path(tempfile.mkdtemp(prefix="vmportal-var-"))
    atexit.register(shutil.rmtree, template, ignore_errors=True)
    # collectstatic needs no database, so it runs alongside migrate.
    steps = [subprocess.Popen([sys.executable, str(REPO / "manage.py"), *args, "--noinput", "-v", "0"], cwd=REPO,
                              env=portal_env(template), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for args in (["migrate"], ["collectstatic"])]
    for step in steps:
        output = step.communicate(timeout=300)[0]
        if step.returncode != 0:
            raise RuntimeError(f"{step.args!r} exited {step.returncode}:\n{output}")
    return template


def migrated_database(var_dir: Path) -> None:
    """var_dir's SQLite database, as `manage.py migrate` leaves it (copied through SQLite's backup, which
    also takes what the write-ahead log still holds)."""
    var_dir.mkdir(parents=True, exist_ok=True)
    with (sqlite3.connect(_prepared_var_dir() / "db.sqlite3") as source,
          sqlite3.connect(var_dir / "db.sqlite3") as copy):
        source.backup(copy)
    source.close()
    copy.close()


def collected_static(var_dir: Path) -> None:
    """var_dir's static files, as `manage.py collectstatic` leaves them."""
    shutil.copytree(_prepared_var_dir() / "static", var_dir / "static", dirs_exist_ok=True)


def raise_file_limit() -> None:
    """As many open files as this user may have: a thousand sockets in one process need more than the default."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def session_code(username: str) -> str:
    """`manage.py shell` code that leaves in `session_key` a session of the user, as a login creates one."""
    return ("from django.test import Client\nfrom accounts.models import User\n"
            f"client = Client()\nclient.force_login(User.objects.get(username={username!r}))\n"
            "session_key = client.cookies['sessionid'].value\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[Any] | None = None, log: Path | None = None,
                  timeout: float = 30) -> None:
    """Returns once something listens on the loopback port; fails early if `process` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            pass
        exited = process is not None and process.poll() is not None
        if exited or time.monotonic() > deadline:
            what = f"{process.args!r} exited {process.returncode}" if exited and process else "nothing answers"
            output = log.read_text(errors="replace") if log is not None and log.exists() else ""
            raise RuntimeError(f"{what} on port {port}:\n{output}")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def upgrade_request(port: int, path: str, *, session_key: str, origin: str | None = None) -> bytes:
    """A browser's websocket handshake for the portal on the loopback port, logged in with the session."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: {origin or f'http://127.0.0.1:{port}'}\r\nCookie: sessionid={session_key}\r\n\r\n"
    ).encode()


def control_frame(opcode: int, payload: bytes) -> bytes:
    """A control frame (at most 125 bytes), masked as every frame from a client is."""
    mask = os.urandom(4)
    return (bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
            + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload)))


PING, PONG, CLOSE, TEXT = 0x9, 0xA, 0x8, 0x1


class LiveSocket:
    """The browser's side of a live-state websocket (RFC 6455: text frames, and pings answered), small enough to
    open by the thousand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, path: str, *, session_key: str, origin: str | None = None) -> LiveSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request(port, path, session_key=session_key, origin=origin))
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionRefusedError(head.split(b"\r\n", 1)[0].decode())
        return cls(reader, writer)

    async def receive_text(self) -> bytes:
        """The next text frame's payload, undecoded (a benchmark reading thousands looks for bytes in it)."""
        while True:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            payload = await self.reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == CLOSE:
                raise ConnectionResetError("closed by the server")
            if opcode == PING:  # as a browser does: daphne closes a socket whose pings go unanswered (50 s)
                self.writer.write(control_frame(PONG, payload))
            if opcode == TEXT:
                return payload

    def close(self) -> None:
        self.writer.close()
