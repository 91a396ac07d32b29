"""Live state when Redis restarts, or a daphne process dies, under open pages: the watchers apart, two daphne
processes, and the pages.

Debian's redis-server runs on a free loopback port without persistence, so a restart forgets every group
membership, as a crashed or upgraded Redis does. The host is test:///default, whose `test` VM the watchers'
process pauses and resumes when told (tests.support.changing_watchers): a change reaching every page is the
sign that they are live.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_live_redis import Stack
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
PAGES_PER_PROCESS = 20
RESYNC_SECONDS = 10  # the bound: from Redis answering again to every page resynced


@dataclass
class Redis:
    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = self.directory / "redis.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.directory),
                 "--save", "", "--appendonly", "no"], stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, log)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@dataclass(kw_only=True)
class RestartingStack(Stack):
    """test_live_redis's stack, with a Redis it may restart and watchers that change test:///default."""

    redis: Redis
    watchers: subprocess.Popen[str] | None = None
    daphnes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def change(self) -> str:
        """Pauses or resumes the `test` VM in the watchers' process; the state it is in now."""
        assert self.watchers is not None and self.watchers.stdin is not None and self.watchers.stdout is not None
        self.watchers.stdin.write("go 1 0\n")
        self.watchers.stdin.flush()
        while not (line := self.watchers.stdout.readline()).startswith("{"):
            assert line, "the watchers' process ended"
        return str(json.loads(line)["changes"][0][1])



@pytest.fixture
def stack(tmp_path: Path) -> Iterator[RestartingStack]:
    redis = Redis(tmp_path)
    redis.start()
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    stack = RestartingStack(env=portal_env(var_dir, REDIS_URL=redis.url, VMPORTAL_LOG_LEVEL="WARNING"),
                            session_key="", daphne_ports=[], logs=[], redis=redis)
    processes: list[subprocess.Popen[Any]] = []
    try:
        migrated_database(var_dir)
        stack.session_key = stack.manage("shell", "--no-imports", "-c", (
            "from accounts.models import User\n"
            "from domains.models import Host\n"
            "Host.objects.create(name='embedded', uri='test:///default')\n"
            f"User.objects.create_user('olga-operator', password={secrets.token_hex(16)!r}, role='operator')\n"
            + session_code("olga-operator") + "print(session_key)\n"
        )).strip()
        log = var_dir / "watchers.log"
        stack.logs.append(log)
        with log.open("wb") as errors:
            stack.watchers = subprocess.Popen([PYTHON, "-m", "tests.support.changing_watchers"], cwd=REPO,
                                              env=stack.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              stderr=errors, text=True)
        processes.append(stack.watchers)
        assert stack.watchers.stdout is not None and stack.watchers.stdout.readline() == "ready\n"
        for name in ("a", "b"):
            stack.daphnes.append(stack.start_daphne(var_dir, name))
            processes.append(stack.daphnes[-1])
        yield stack
    finally:
        for process in processes:
            stop_process(process)
        redis.stop()


async def until(page: LiveSocket, check: Any, timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while not check(message := read(await page.receive_text())):
            pass
    return message


async def changed_everywhere(stack: RestartingStack, pages: list[LiveSocket]) -> None:
    state = await asyncio.to_thread(stack.change)
    await asyncio.gather(*(until(page, lambda m: m["type"] == "row" and f'data-state="{state}"' in m["html"],
                                 RESYNC_SECONDS) for page in pages))


async def test_a_redis_restart_has_every_page_say_it_is_catching_up_then_resync(stack: RestartingStack) -> None:
    pages = [await LiveSocket.open(port, "/ws/domains/?all", session_key=stack.session_key)
             for port in stack.daphne_ports for _ in range(PAGES_PER_PROCESS)]
    try:
        await changed_everywhere(stack, pages)  # live before

        stack.redis.stop()
        await asyncio.gather(*(until(page, lambda m: m == {"type": "indicator", "state": "catching-up"}, 10)
                               for page in pages))
        await asyncio.sleep(2)  # away for a while
        stack.redis.start()
        answering = time.monotonic()
        await asyncio.gather(*(until(page, lambda m: m["type"] == "refresh", RESYNC_SECONDS) for page in pages))
        await asyncio.gather(*(until(page, lambda m: m == {"type": "indicator", "state": "on"}, 1) for page in pages))
        assert time.monotonic() - answering < RESYNC_SECONDS

        # Live after: the groups were joined again, on both daphne processes, and the watchers still publish.
        await changed_everywhere(stack, pages)
    except (TimeoutError, ConnectionError) as error:
        pytest.fail(f"{error!r}; the servers' logs:\n{stack.log_text()}")
    finally:
        for page in pages:
            page.close()


async def test_a_killed_daphne_process_leaves_the_other_live_and_its_pages_resync_there(
    stack: RestartingStack,
) -> None:
    first, second = [[await LiveSocket.open(port, "/ws/domains/?all", session_key=stack.session_key)
                      for _ in range(PAGES_PER_PROCESS)] for port in stack.daphne_ports]
    reconnected: list[LiveSocket] = []
    try:
        await changed_everywhere(stack, first + second)
        shown_at = time.time_ns() // 1000  # what the first process's pages last showed
        stack.daphnes[0].kill()
        state = await asyncio.to_thread(stack.change)  # a change they miss
        await asyncio.gather(*(until(page, lambda m: m["type"] == "row" and f'data-state="{state}"' in m["html"],
                                     RESYNC_SECONDS) for page in second))
        for page in first:
            with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(page.receive_text(), RESYNC_SECONDS)
        # What live.js does: reconnect (through the proxy, to the process still up) with the time its data
        # was read; the change it missed is replayed to it.
        reconnected = [await LiveSocket.open(stack.daphne_ports[1], f"/ws/domains/?all&since={shown_at}",
                                             session_key=stack.session_key) for _ in first]
        await asyncio.gather(*(until(page, lambda m: m["type"] == "row" and f'data-state="{state}"' in m["html"],
                                     RESYNC_SECONDS) for page in reconnected))
    except (TimeoutError, ConnectionError) as error:
        pytest.fail(f"{error!r}; the servers' logs:\n{stack.log_text()}")
    finally:
        for page in first + second + reconnected:
            page.close()
