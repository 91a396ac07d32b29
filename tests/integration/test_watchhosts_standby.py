"""The README's standby: a second `manage.py watchhosts` takes over within 10 s when the one watching is killed."""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import lab
from tests.integration.helpers import virsh
from tests.integration.test_live_redis import PYTHON, REPO, Stack, redis_url, stack, tiny_domain, wait_for_row
from tests.support.portal import LiveSocket, stop_process

pytestmark = pytest.mark.integration

__all__ = ["redis_url", "stack"]  # the fixtures, used here by name

TAKEOVER_SECONDS = 10


def wait_for_line(log: Path, line: str, timeout: float) -> float:
    """Seconds until `line` appears in `log`."""
    started = time.monotonic()
    while line not in log.read_text(errors="replace"):
        assert time.monotonic() - started < timeout, f"{log.name} never said {line!r}:\n{log.read_text()}"
        time.sleep(0.05)
    return time.monotonic() - started


async def test_the_standby_watches_within_10_s_of_the_watcher_s_death(
    stack: Stack, lab_hosts: list[lab.LabHost], tmp_path: Path
) -> None:
    assert stack.watchhosts is not None
    standby_log = tmp_path / "standby.log"
    with standby_log.open("wb") as out:
        standby = subprocess.Popen([PYTHON, "manage.py", "watchhosts"], cwd=REPO, env=stack.env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        wait_for_line(standby_log, "standing by", 30)
        lab1 = lab_hosts[0]
        name, domain_uuid = f"standby-{secrets.token_hex(3)}", str(uuid.uuid4())
        client = await LiveSocket.open(stack.daphne_ports[0], f"/ws/domains/?all&host={lab1.name}&q={name}",
                                       session_key=stack.session_key)
        try:
            stack.watchhosts.send_signal(signal.SIGKILL)  # no goodbye: the lease is left to expire
            took_over = wait_for_line(standby_log, "watching every enabled host", TAKEOVER_SECONDS + 5)
            assert took_over < TAKEOVER_SECONDS, f"the standby took {took_over:.1f} s"
            # And it publishes: a guest started now reaches the open page through the standby's watcher.
            xml = tmp_path / "tiny.xml"
            xml.write_text(tiny_domain(name, domain_uuid))
            virsh(lab1, "create", str(xml))
            try:
                await wait_for_row(client, name, "running", timeout=TAKEOVER_SECONDS)
            finally:
                virsh(lab1, "destroy", name)
        finally:
            client.close()
    finally:
        stop_process(standby)
