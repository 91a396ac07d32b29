"""The real lab for integration tests: two libvirtd hosts with the demo guests, up once per session.

The lab is stopped at the end of the session unless VMPORTAL_LAB_KEEP=1. Tests marked lab_down
stop it themselves; tests/conftest.py runs them last, and any test after them gets the lab back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import lab

KEEP_LAB = os.environ.get("VMPORTAL_LAB_KEEP") == "1"
LAB_HOSTS = 2


@pytest.fixture(scope="session")
def lab_session() -> Iterator[None]:
    usable, reason = lab.available()
    if not usable:
        pytest.skip(f"the lab cannot run here: {reason}")
    yield
    if not KEEP_LAB:
        lab.down()


@pytest.fixture
def lab_hosts(lab_session: None) -> list[lab.LabHost]:
    """The lab's hosts, up with the demo inventory; fast when it already is (the usual case)."""
    return lab.up(hosts=LAB_HOSTS)
