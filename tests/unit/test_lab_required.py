"""A machine that cannot start the lab skips the lab's tests for a developer, and fails them in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_a_lab_test(**env: str) -> subprocess.CompletedProcess[str]:
    # No libvirtd on PATH: lab.available() says why, before anything is started.
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         "tests/integration/test_lab.py::test_each_host_is_its_own_libvirtd"],
        cwd=ROOT, env={**os.environ, "PATH": "/nonexistent", **env}, capture_output=True, text=True, check=False,
        timeout=120,
    )


@pytest.mark.parametrize(("required", "outcome"), [("0", "1 skipped"), ("1", "1 error")])
def test_an_unavailable_lab_fails_the_run_only_where_it_is_required(required: str, outcome: str) -> None:
    result = _run_a_lab_test(VMPORTAL_REQUIRE_LAB=required)
    assert outcome in result.stdout, result.stdout[-2000:]
    assert "missing programs: libvirtd" in result.stdout
    assert (result.returncode != 0) == (required == "1")
