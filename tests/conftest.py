"""Fixtures shared by every layer: users of each role, hosts, a fresh hypervisor per test, the lab.

The real lab (two libvirtd hosts with the demo guests) comes up once per session for the integration
and browser tests, and is stopped at the end unless VMPORTAL_LAB_KEEP=1. Tests marked lab_down stop
it themselves; they run last, and any test after them gets the lab back.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.hashers import make_password
from django.test import Client

import lab
from accounts.models import User
from domains import virt
from domains.models import Grant, Host

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"
KEEP_LAB = os.environ.get("VMPORTAL_LAB_KEEP") == "1"
LAB_HOSTS = 2


def _layer(item: pytest.Item) -> int:
    """Unit, then integration, then browser tests, then those that stop the lab.

    Browser tests go after the rest: Playwright's sync API leaves an event loop running in the main
    thread for the session, and under it Django refuses sync ORM calls and pytest-asyncio cannot
    start its own loop.
    """
    if item.get_closest_marker("lab_down"):
        return 3
    if item.get_closest_marker("e2e"):
        return 2
    return 1 if item.get_closest_marker("integration") else 0


def pytest_sessionstart(session: pytest.Session) -> None:
    """A fresh clone's plain `pytest` says what to run first, instead of failing test by test."""
    if not (ROOT / "static" / "novnc" / ".copied").exists():
        pytest.exit("The front-end libraries and the lab's packages are not installed here: run bin/setup (as root) "
                    "once, or bin/test, which runs it and then the whole suite.", returncode=4)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # trylast: after pytest-django's own reordering, which this keeps within each layer.
    items.sort(key=_layer)


# Set by .ci/run: there, a lab that cannot start fails the run instead of skipping its tests.
REQUIRE_LAB = os.environ.get("VMPORTAL_REQUIRE_LAB") == "1"


@pytest.fixture(scope="session")
def lab_session() -> Iterator[None]:
    usable, reason = lab.available()
    if not usable:
        if REQUIRE_LAB:
            pytest.fail(f"the lab cannot run here, and VMPORTAL_REQUIRE_LAB=1 requires it: {reason}")
        pytest.skip(f"the lab cannot run here: {reason}")
    yield
    if not KEEP_LAB:
        lab.down()


@pytest.fixture
def lab_hosts(lab_session: None) -> list[lab.LabHost]:
    """The lab's hosts, up with the demo inventory; fast when it already is (the usual case)."""
    return lab.up(hosts=LAB_HOSTS)


@pytest.fixture(scope="session", autouse=True)
def libvirt_event_loop() -> None:
    """What the web process does first (vmportal.lifespan): libvirt's event loop, before any connection."""
    virt.initialize()


@pytest.fixture(autouse=True)
def no_frozen_heap(settings) -> None:
    """The tests' own process is not a web process: what its tests leave behind must stay collectable."""
    settings.FREEZE_STARTUP_HEAP = False


@pytest.fixture(autouse=True)
def no_usage_sampling(settings) -> None:
    """Supervisors started by tests sample no usage (a thread writing to the database under every test that
    watches a host); the usage tests ask for it."""
    settings.USAGE_INTERVAL_SECONDS = 0


@pytest.fixture(autouse=True)
def fresh_hypervisor_connections() -> Iterator[None]:
    """test:///default keeps its state while any connection to it is open: close them all."""
    virt.pool.close_all()
    yield
    virt.pool.close_all()


@functools.cache
def _password_hash(hashers: tuple[str, ...]) -> str:
    """PASSWORD hashed once per run and hasher setting: the project's hasher takes a second or more each
    time (as it should), and every test user has the same password."""
    return make_password(PASSWORD)


def make_user(username: str, role: User.Role) -> User:
    return User.objects.create(username=username, role=role,
                               password=_password_hash(tuple(django_settings.PASSWORD_HASHERS)))


@pytest.fixture
def admin_user(db: None) -> User:
    return make_user("alice-admin", User.Role.ADMIN)


@pytest.fixture
def operator_user(db: None) -> User:
    return make_user("oscar-operator", User.Role.OPERATOR)


@pytest.fixture
def tenant_user(db: None) -> User:
    return make_user("tina-tenant", User.Role.TENANT)


@pytest.fixture
def other_tenant_user(db: None) -> User:
    return make_user("otto-other", User.Role.TENANT)


@pytest.fixture
def embedded_host(db: None) -> Host:
    return Host.objects.create(name="embedded", uri="test:///default")


TEST_DOMAIN_UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the "test" VM of test:///default


@pytest.fixture
def tenant_grant(embedded_host: Host, tenant_user: User) -> Grant:
    """The tenant may see, operate and open the console of test:///default's "test" VM."""
    return Grant.objects.create(
        host=embedded_host, domain_uuid=TEST_DOMAIN_UUID, user=tenant_user, can_operate=True, can_console=True
    )


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


# --- Hypervisors made up for a test: an XML inventory, and loopback hosts that never answer. ---


@pytest.fixture
def xml_host(db: None, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Host]:
    """Registers a host backed by test:///<tmp>/<name>.xml holding the given <domain> elements.

    Each item is a dict with name, uuid and optionally title; every such domain is running. The
    strings are XML-escaped here, so a test can hand over any guest-controlled text.
    """
    directory = tmp_path_factory.mktemp("xml-hosts")

    def make(name: str, domains: list[dict[str, object]]) -> Host:
        parts = []
        for domain in domains:
            title = f"<title>{escape(str(domain['title']))}</title>" if domain.get("title") else ""
            parts.append(
                f"<domain type='test'><name>{escape(str(domain['name']))}</name><uuid>{domain['uuid']}</uuid>"
                f"{title}<memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
            )
        path = directory / f"{name}.xml"
        path.write_text("<node>" + "".join(parts) + "</node>")
        return Host.objects.create(name=name, uri=f"test://{path}")

    return make


@pytest.fixture
def closed_loopback_uri() -> str:
    """A qemu+tcp URI on a loopback port nothing listens on: libvirt's connect is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"qemu+tcp://127.0.0.1:{port}/system"


@pytest.fixture
def silent_loopback_uri() -> Iterator[str]:
    """A qemu+tcp URI on a loopback socket that accepts connections and never answers.

    libvirt's connect hangs on it until the socket closes; closing it at teardown resets the
    queued connections, so the hung libvirt call returns and no worker thread stays stuck.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    yield f"qemu+tcp://127.0.0.1:{port}/system"
    listener.close()
    time.sleep(0.05)  # lets the reset reach the hung connect before the next test
