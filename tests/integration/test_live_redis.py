"""Live state across processes: Debian's redis-server, `manage.py watchhosts` and TWO daphne processes.

A change made with virsh on a real lab host reaches the browsers of both daphne processes, through
the one watcher process and channels-redis. Redis runs on a free loopback port from a temporary
directory, started and stopped here; the servers share a throw-away var dir (SQLite and sessions).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import lab
from tests.integration.helpers import virsh
from tests.live_messages import read
from tests.support.portal import (
    LiveSocket,
    free_port,
    migrated_database,
    portal_env,
    session_code,
    stop_process,
    wait_for_port,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PYTHON = str(Path(sys.executable))
DAPHNE = str(Path(sys.executable).parent / "daphne")


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
    watchhosts: subprocess.Popen[bytes] | None = None

    def manage(self, *args: str) -> str:
        result = subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start_daphne(self, var_dir: Path, name: str) -> subprocess.Popen[bytes]:
        """One more daphne process of the stack, logging to var_dir/daphne-<name>.log, once it listens."""
        port = free_port()
        log = var_dir / f"daphne-{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            process = subprocess.Popen([DAPHNE, "-b", "127.0.0.1", "-p", str(port), "vmportal.asgi:application"],
                                       cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, process, log)
        except BaseException:
            stop_process(process)
            raise
        self.daphne_ports.append(port)
        return process

    def log_text(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')}" for log in self.logs)


@pytest.fixture
def stack(redis_url: str, tmp_path: Path, lab_hosts: list[lab.LabHost]) -> Iterator[Stack]:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    env = portal_env(var_dir, REDIS_URL=redis_url)
    stack = Stack(env=env, session_key="", daphne_ports=[], logs=[])
    migrated_database(var_dir)
    lab1 = lab_hosts[0]
    stack.session_key = stack.manage("shell", "--no-imports", "-c", (
        "from accounts.models import User\n"
        "from domains.models import Host\n"
        f"Host.objects.create(name={lab1.name!r}, uri={lab1.uri!r})\n"
        f"User.objects.create_user('olga-operator', password={secrets.token_hex(16)!r}, role='operator')\n"
        + session_code("olga-operator") + "print(session_key)\n"
    )).strip()

    processes: list[subprocess.Popen[bytes]] = []
    try:
        log = var_dir / "watchhosts.log"
        stack.logs.append(log)
        with log.open("wb") as out:
            processes.append(subprocess.Popen([PYTHON, "manage.py", "watchhosts"], cwd=REPO, env=env, stdout=out,
                                              stderr=subprocess.STDOUT))
        stack.watchhosts = processes[-1]
        processes += [stack.start_daphne(var_dir, name) for name in ("a", "b")]
        yield stack
    finally:
        for process in processes:
            stop_process(process)


# --- What the clients wait for. ---


async def wait_for_row(client: LiveSocket, name: str, state: str, timeout: float = 10) -> float:
    """Seconds until a row of `name` in `state` arrives."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while True:
            message = read(await client.receive_text())
            html = str(message.get("html", ""))
            if message["type"] == "row" and f'data-name="{name}"' in html and f'data-state="{state}"' in html:
                return time.monotonic() - started


async def wait_for_removal(client: LiveSocket, host_name: str, uuid: str, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while read(await client.receive_text()) != {"type": "remove", "id": f"domain-{host_name}-{uuid}"}:
            pass


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
    path = f"/ws/domains/?all&host={lab1.name}&q={name}"
    clients = [await LiveSocket.open(port, path, session_key=stack.session_key)
               for port in stack.daphne_ports for _ in range(2)]
    xml = tmp_path / "tiny.xml"
    xml.write_text(tiny_domain(name, domain_uuid))
    try:
        virsh(lab1, "create", str(xml))
        try:
            await asyncio.gather(*(wait_for_row(client, name, "running") for client in clients))
            virsh(lab1, "suspend", name)
            waits = await asyncio.gather(*(wait_for_row(client, name, "paused") for client in clients))
            assert max(waits) < 2, waits
        finally:
            virsh(lab1, "destroy", name)
        # A transient guest that stops is gone: it leaves every list.
        await asyncio.gather(*(wait_for_removal(client, lab1.name, domain_uuid) for client in clients))
    except (TimeoutError, ConnectionError) as error:
        pytest.fail(f"{error!r}; the servers' logs:\n{stack.log_text()}")
    finally:
        for client in clients:
            client.close()


async def test_a_foreign_origin_is_refused_by_every_process(stack: Stack) -> None:
    for port in stack.daphne_ports:
        with pytest.raises(ConnectionRefusedError, match="403"):
            await LiveSocket.open(port, "/ws/domains/?all", session_key=stack.session_key,
                                  origin="http://evil.example")


def test_every_daphne_process_lists_what_watchhosts_published(stack: Stack, lab_hosts: list[lab.LabHost]) -> None:
    """The list is served from the records watchhosts publishes, by each daphne process, without asking lab1."""
    lab1 = lab_hosts[0]
    expected = sorted(virsh(lab1, "list", "--all", "--name").split())
    for port in stack.daphne_ports:
        deadline = time.monotonic() + 30
        while True:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/domains/?all&per_page=500&format=json",
                                             headers={"Cookie": f"sessionid={stack.session_key}"})
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (our own loopback server)
                body = json.load(answer)
            if body["hosts"] == [{"host": lab1.name, "watched": True, "listed_at": body["hosts"][0]["listed_at"]}]:
                break
            assert time.monotonic() < deadline, f"daphne on {port} never listed from the published records: {body}"
            time.sleep(0.5)
        assert sorted(row["name"] for row in body["domains"]) == expected
        assert body["hosts"][0]["listed_at"] is not None
