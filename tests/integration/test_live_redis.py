"""Live state across processes: Debian's redis-server, `manage.py watchhosts` and TWO daphne processes.

A change made with virsh on a real lab host reaches the browsers of both daphne processes, through
the one watcher process and channels-redis. Redis runs on a free loopback port from a temporary
directory, started and stopped here; the servers share a throw-away var dir (SQLite and sessions).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import lab
from consoles.testing import free_port, stop_process
from tests.integration.helpers import virsh

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(Path(sys.executable))
DAPHNE = str(Path(sys.executable).parent / "daphne")
STARTUP_SECONDS = 30


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"{process.args!r} exited {process.returncode}:\n{log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                pytest.fail(f"nothing answers on port {port}:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    directory = tmp_path / "redis"
    directory.mkdir()
    log = directory / "redis.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, server, log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(server)


@dataclass
class Stack:
    env: dict[str, str]
    session_key: str
    daphne_ports: list[int]
    logs: list[Path]

    def manage(self, *args: str) -> str:
        result = subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def log_text(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')}" for log in self.logs)


@pytest.fixture
def stack(redis_url: str, tmp_path: Path, lab_hosts: list[lab.LabHost]) -> Iterator[Stack]:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    env = {name: value for name, value in os.environ.items()
           if not re.match(r"^(VMPORTAL_|DJANGO_|DATABASE_URL$|REDIS_URL$)", name)}
    env.update({"VMPORTAL_VAR_DIR": str(var_dir), "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1",
                "VMPORTAL_ALLOWED_HOSTS": "127.0.0.1,localhost", "DJANGO_SETTINGS_MODULE": "vmportal.settings"})
    stack = Stack(env=env, session_key="", daphne_ports=[], logs=[])
    stack.manage("migrate", "--noinput", "-v", "0")
    lab1 = lab_hosts[0]
    stack.session_key = stack.manage("shell", "--no-imports", "-c", (
        "from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY\n"
        "from django.contrib.sessions.backends.db import SessionStore\n"
        "from accounts.models import User\n"
        "from domains.models import Host\n"
        f"Host.objects.create(name={lab1.name!r}, uri={lab1.uri!r})\n"
        f"user = User.objects.create_user('olga-operator', password={secrets.token_hex(16)!r}, role='operator')\n"
        "session = SessionStore()\n"
        "session[SESSION_KEY] = str(user.pk)\n"
        "session[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
        "session[HASH_SESSION_KEY] = user.get_session_auth_hash()\n"
        "session.create()\n"
        "print(session.session_key)\n"
    )).strip()

    processes: list[subprocess.Popen[bytes]] = []
    try:
        log = var_dir / "watchhosts.log"
        stack.logs.append(log)
        with log.open("wb") as out:
            processes.append(subprocess.Popen([PYTHON, "manage.py", "watchhosts"], cwd=REPO, env=env, stdout=out,
                                              stderr=subprocess.STDOUT))
        for name in ("a", "b"):
            port = free_port()
            log = var_dir / f"daphne-{name}.log"
            stack.logs.append(log)
            with log.open("wb") as out:
                processes.append(subprocess.Popen([DAPHNE, "-b", "127.0.0.1", "-p", str(port),
                                                   "vmportal.asgi:application"],
                                                  cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT))
            wait_for_port(port, processes[-1], log)
            stack.daphne_ports.append(port)
        yield stack
    finally:
        for process in processes:
            stop_process(process)


# --- A websocket client as small as a browser's side of the protocol (RFC 6455, text frames). ---


class WebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, path: str, *, cookie: str, origin: str) -> WebSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n"
            f"Cookie: {cookie}\r\n\r\n"
        ).encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionRefusedError(head.split(b"\r\n", 1)[0].decode())
        return cls(reader, writer)

    async def receive(self) -> dict[str, object]:
        while True:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            payload = await self.reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionResetError("closed by the server")
            if opcode == 0x1:
                return json.loads(payload)

    async def wait_for_row(self, name: str, state: str, timeout: float = 10) -> float:
        """Seconds until a row of `name` in `state` arrives."""
        started = time.monotonic()
        async with asyncio.timeout(timeout):
            while True:
                message = await self.receive()
                html = str(message.get("html", ""))
                if message["type"] == "row" and f'data-name="{name}"' in html and f'data-state="{state}"' in html:
                    return time.monotonic() - started

    async def wait_for_removal(self, host_name: str, uuid: str, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while (await self.receive()) != {"type": "remove", "id": f"domain-{host_name}-{uuid}"}:
                pass

    def close(self) -> None:
        self.writer.close()


def tiny_domain(name: str, domain_uuid: str) -> str:
    """A transient guest with nothing to boot: it runs, pauses and stops like any other, in 32 MiB."""
    return (f"<domain type='kvm'><name>{name}</name><uuid>{domain_uuid}</uuid><memory unit='MiB'>32</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os>"
            "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>")


async def test_an_event_reaches_the_clients_of_both_daphne_processes(
    stack: Stack, lab_hosts: list[lab.LabHost], tmp_path: Path
) -> None:
    lab1 = lab_hosts[0]
    name, domain_uuid = f"live-redis-{secrets.token_hex(3)}", str(uuid.uuid4())
    cookie = f"sessionid={stack.session_key}"
    path = f"/ws/domains/?all&host={lab1.name}&q={name}"
    clients = [await WebSocket.open(port, path, cookie=cookie, origin=f"http://127.0.0.1:{port}")
               for port in stack.daphne_ports for _ in range(2)]
    xml = tmp_path / "tiny.xml"
    xml.write_text(tiny_domain(name, domain_uuid))
    try:
        virsh(lab1, "create", str(xml))
        try:
            await asyncio.gather(*(client.wait_for_row(name, "running") for client in clients))
            virsh(lab1, "suspend", name)
            waits = await asyncio.gather(*(client.wait_for_row(name, "paused") for client in clients))
            assert max(waits) < 2, waits
        finally:
            virsh(lab1, "destroy", name)
        # A transient guest that stops is gone: it leaves every list.
        await asyncio.gather(*(client.wait_for_removal(lab1.name, domain_uuid) for client in clients))
    except (TimeoutError, ConnectionError) as error:
        pytest.fail(f"{error!r}; the servers' logs:\n{stack.log_text()}")
    finally:
        for client in clients:
            client.close()


async def test_a_foreign_origin_is_refused_by_every_process(stack: Stack) -> None:
    for port in stack.daphne_ports:
        with pytest.raises(ConnectionRefusedError, match="403"):
            await WebSocket.open(port, "/ws/domains/?all", cookie=f"sessionid={stack.session_key}",
                                 origin="http://evil.example")
