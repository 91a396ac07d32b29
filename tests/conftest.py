"""Fixtures shared by every layer: users of each role, hosts, and a fresh hypervisor per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.test import Client

from accounts.models import User
from domains import virt
from domains.models import Grant, Host

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fresh_hypervisor_connections() -> Iterator[None]:
    """test:///default keeps its state while any connection to it is open: close them all."""
    virt.pool.close_all()
    yield
    virt.pool.close_all()


def make_user(username: str, role: User.Role) -> User:
    return User.objects.create_user(username=username, password=PASSWORD, role=role)


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
