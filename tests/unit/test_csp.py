"""Content-Security-Policy: on every page, without inline script; and no template relies on inline script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

from accounts.models import User
from domains.models import Host
from tests.conftest import TEST_DOMAIN_UUID, client_for

VM = f"embedded/{TEST_DOMAIN_UUID}"
PAGES = {
    "list": "/domains/?all",
    "detail": f"/domains/{VM}/",
    "hosts": "/hosts/",
    "audit": "/audit/",
    "users": "/people/",
    "grants": "/people/grants/",
    "admin": "/admin/",
    "admin change form": "/admin/accounts/user/{admin_id}/change/",
    "admin add form": "/admin/domains/grant/add/",
    "console page": f"/consoles/{VM}/",
    "api tokens": "/accounts/tokens/",
    "api docs": "/api/docs/",
    "login": "/accounts/login/",  # anonymous: the page everybody gets
}
BASE_DIR = Path(django_settings.BASE_DIR)
TEMPLATES = sorted(str(path.relative_to(BASE_DIR))
                   for directory in [BASE_DIR / "templates", *BASE_DIR.glob("*/templates")]
                   for path in directory.rglob("*.html"))


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def get(page: str, admin_user: User):
    client = Client() if page == "login" else client_for(admin_user)
    response = client.get(PAGES[page].format(admin_id=admin_user.pk))
    assert response.status_code in (200, 409), (page, response.status_code)  # 409: a console-less VM
    return response


@pytest.mark.parametrize("page", PAGES)
def test_every_page_carries_the_policy(page: str, admin_user: User, embedded_host: Host):
    directives = policy(get(page, admin_user))
    assert directives["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no other host
    assert directives["style-src"] == ["'self'"]
    assert directives["default-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'self'"]
    assert directives["form-action"] == ["'self'"]


def test_an_error_page_and_a_json_answer_carry_it_too(admin_user: User, embedded_host: Host):
    client = client_for(admin_user)
    assert "script-src 'self';" in client.get("/domains/embedded/00000000-0000-4000-8000-000000000000/")[
        "Content-Security-Policy"]
    assert "script-src 'self';" in client.get("/domains/?all&format=json")["Content-Security-Policy"]


@pytest.mark.parametrize(("console_url", "console_sources"), [
    ("/websockify", []),
    (":6080/websockify", ["ws://vmportal.example.org:6080", "wss://vmportal.example.org:6080"]),
    ("wss://console.example.org/websockify", ["wss://console.example.org"]),
    ("wss://console.example.org:8443/websockify", ["wss://console.example.org:8443"]),
])
def test_websockets_may_reach_the_pages_host_and_the_console_proxy_only(settings, db: None, console_url: str,
                                                                       console_sources: list[str]):
    settings.CONSOLE_URL = console_url
    settings.ALLOWED_HOSTS = ["vmportal.example.org"]
    response = Client().get("/accounts/login/", HTTP_HOST="vmportal.example.org:8443")
    assert policy(response)["connect-src"] == [
        "'self'", "ws://vmportal.example.org:8443", "wss://vmportal.example.org:8443", *console_sources]


def test_a_request_for_a_host_we_do_not_serve_still_gets_a_policy(db: None):
    response = Client().get("/accounts/login/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert policy(response)["connect-src"] == ["'self'"]


# What the policy would block, found before a browser does: inline script bodies, event-handler
# attributes, javascript: URLs, inline style (<style> or style=).
INLINE = {
    # A body that runs: not one with src=, nor data (json_script's type="application/json").
    "inline <script> body": re.compile(r"<script\b(?![^>]*\b(?:src=|type=\"application/json\"))[^>]*>\s*[^<\s]", re.I),
    "on*= event attribute": re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I | re.S),
    "javascript: URL": re.compile(r"=\s*[\"']?\s*javascript:", re.I),
    "inline <style>": re.compile(r"<style\b", re.I),
    "style= attribute": re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I | re.S),
}


def inline_code(html: str) -> list[str]:
    return [f"{what}: {match.group(0)[:120]!r}" for what, pattern in INLINE.items() for match in pattern.finditer(html)]


def test_the_scanner_finds_what_the_policy_blocks():
    """The template test below can fail: each thing it looks for is found in a sample."""
    samples = ["<script>alert(1)</script>", '<button class="x"\n onclick="go()">', '<a href="javascript:go()">',
               "<style>p{}</style>", '<p style="color:red">']
    assert [len(inline_code(sample)) for sample in samples] == [1, 1, 1, 1, 1]
    assert inline_code('<script src="/static/x.js" defer></script><button data-on="x" hx-confirm="Sure?">'
                       '<script id="c" type="application/json">{"a": 1}</script>') == []


def test_the_templates_are_found():
    assert "templates/base.html" in TEMPLATES and "templates/consoles/console.html" in TEMPLATES


@pytest.mark.parametrize("template", TEMPLATES)
def test_no_template_carries_inline_script_or_style(template: str):
    assert inline_code((BASE_DIR / template).read_text()) == []


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("debug", [False, True])
def test_no_page_renders_inline_script_or_style(page: str, debug: bool, settings, admin_user: User,
                                                embedded_host: Host):
    """What template tags emit too ({% htmx_script %} adds django-htmx's script in DEBUG)."""
    settings.DEBUG = debug
    assert inline_code(get(page, admin_user).content.decode()) == []
