"""Looking at the lab from outside, with virsh, as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import lab
from tests.conftest import ROOT


def virsh(host: lab.LabHost, *args: str, timeout: float = 120) -> str:
    completed = subprocess.run(
        ["virsh", "--quiet", "--connect", host.uri, *args], capture_output=True, text=True, timeout=timeout
    )
    assert completed.returncode == 0, f"virsh {' '.join(args)} on {host.name}: {completed.stderr.strip()}"
    return completed.stdout.strip()


def agent(host: lab.LabHost, domain: str, command: str) -> Any:
    """What the guest agent of domain returns for command."""
    reply = virsh(host, "qemu-agent-command", domain, json.dumps({"execute": command}), "--timeout", "5")
    return json.loads(reply)["return"]


def agent_answers(host: lab.LabHost, domain: str) -> bool:
    completed = subprocess.run(
        ["virsh", "--connect", host.uri, "qemu-agent-command", domain, '{"execute":"guest-ping"}', "--timeout", "2"],
        capture_output=True,
        timeout=30,
    )
    return completed.returncode == 0


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll condition until it holds; return the seconds it took. Fails the test at timeout."""
    start = time.monotonic()
    while not condition():
        elapsed = time.monotonic() - start
        assert elapsed < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.3)
    return time.monotonic() - start


def domains(host: lab.LabHost, *, active_only: bool = False) -> set[str]:
    return set(virsh(host, "list", "--name", *([] if active_only else ["--all"])).split())


def domain_state(host: lab.LabHost, domain: str) -> str:
    return virsh(host, "domstate", domain)


def host_of(hosts: list[lab.LabHost], domain: str) -> lab.LabHost:
    """The host where domain is active (it may have migrated), or defined."""
    for active_only in (True, False):
        for host in hosts:
            if domain in domains(host, active_only=active_only):
                return host
    raise AssertionError(f"{domain} is on no lab host")


def lab_instance(instance: str, *args: str) -> str:
    """`python -m lab args` on a lab instance of the test's own (VMPORTAL_LAB_INSTANCE); its output."""
    completed = subprocess.run(
        [sys.executable, "-m", "lab", *args],
        env={**os.environ, "VMPORTAL_LAB_INSTANCE": instance},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout
