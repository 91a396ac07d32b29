"""deploy/nginx/vmportal.conf as shipped, in Debian's nginx with a self-signed certificate, in front of a
production-mode portal: one TLS origin for the app and the console proxy, and a console opens through it.
"""

from __future__ import annotations

import re
import secrets
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

import lab
from tests.e2e.conftest import PASSWORD, Violations
from tests.integration.helpers import host_of, virsh
from tests.support.consoles import (
    REPO,
    ClientWebSocket,
    ConsoleStack,
    Stream,
    rfb_handshake,
    wait_for,
)
from tests.support.portal import free_port, wait_for_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USER = "tina"
FORGED = "203.0.113.77"
NGINX_CONF = REPO / "deploy" / "nginx" / "vmportal.conf"


def site_config(*, directory: Path, https_port: int, http_port: int, app_port: int, console_port: int) -> str:
    """The shipped file, with only its addresses, certificate and log paths put where this test has them."""
    conf = NGINX_CONF.read_text()
    replacements = {
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{app_port};",
        "server 127.0.0.1:6080;": f"server 127.0.0.1:{console_port};",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "vmportal.example.org": "127.0.0.1",
        "/etc/ssl/certs/127.0.0.1.pem": str(directory / "cert.pem"),
        "/etc/ssl/private/127.0.0.1.key": str(directory / "key.pem"),
        "/var/log/nginx/": f"{directory}/",
    }
    for old, new in replacements.items():
        assert old in conf, f"{old!r} is no longer in {NGINX_CONF}"
        conf = conf.replace(old, new)
    # Only loopback in tests: drop the IPv6 wildcard listeners.
    return re.sub(r"\n\s*listen \[::\]:\d+[^;]*;", "", conf)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, hosts: list[lab.LabHost]) -> Iterator[tuple[ConsoleStack, str]]:
    directory = tmp_path_factory.mktemp("nginx")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(directory / "key.pem"),
                    "-out", str(directory / "cert.pem")], check=True, capture_output=True)
    https_port, http_port = free_port(), free_port()
    origin = f"https://127.0.0.1:{https_port}"
    stack = ConsoleStack(directory / "var", settings={
        "VMPORTAL_PRODUCTION": "1", "VMPORTAL_SECRET_KEY": secrets.token_urlsafe(50),
        "VMPORTAL_ALLOWED_HOSTS": "127.0.0.1", "VMPORTAL_CONSOLE_URL": "/websockify",
    })
    stack.var_dir.mkdir()
    stack.setup({host.name: host.uri for host in hosts})
    vga = host_of(hosts, "demo-vga")
    stack.user(USER, grants=((vga.name, virsh(vga, "domuuid", "demo-vga")),))
    console_port, app_port = stack.proxy(), stack.daphne()
    (directory / "vmportal.conf").write_text(site_config(directory=directory, https_port=https_port,
                                                         http_port=http_port, app_port=app_port,
                                                         console_port=console_port))
    (directory / "nginx.conf").write_text(
        f"pid {directory}/nginx.pid;\nerror_log {directory}/error.log;\nevents {{}}\n"
        f"http {{\n  include /etc/nginx/mime.types;\n  client_body_temp_path {directory}/body;\n"
        f"  proxy_temp_path {directory}/proxy;\n  access_log {directory}/other.log;\n"
        f"  include {directory}/vmportal.conf;\n}}\n")
    log = directory / "nginx.out"
    with log.open("wb") as out:
        nginx = subprocess.Popen(["nginx", "-p", str(directory), "-c", str(directory / "nginx.conf"),
                                  "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(https_port, nginx, log)
        yield stack, origin
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
        stack.stop()


def test_a_console_opens_through_nginx(site: tuple[ConsoleStack, str], browser: Browser,
                                       hosts: list[lab.LabHost]) -> None:
    stack, origin = site
    # A client naming itself: nginx must replace the header, not pass it on (the app trusts loopback).
    context = browser.new_context(base_url=origin, ignore_https_errors=True,
                                  extra_http_headers={"X-Forwarded-For": FORGED})
    context.set_default_timeout(30_000)
    violations = Violations(context)
    try:
        page = context.new_page()
        page.goto("/accounts/login/")
        page.fill("#id_username", USER)
        page.fill("#id_password", PASSWORD)
        page.locator("main form").get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/domains/"))
        # The live socket (wss through nginx, ws behind it with X-Forwarded-Proto) is the page's own origin.
        expect(page.locator("#live-indicator")).to_have_attribute("data-live", "on")
        cookies = {cookie["name"]: cookie for cookie in context.cookies()}
        assert cookies["sessionid"]["secure"] and cookies["sessionid"]["httpOnly"]
        host = host_of(hosts, "demo-vga")
        page.goto(f"/domains/{host.name}/{virsh(host, 'domuuid', 'demo-vga')}/")
        with context.expect_page() as opened:
            page.locator("a[data-action=console]").click()
        console = opened.value
        expect(console.locator("#console-state")).to_have_attribute("data-state", "connected")
        assert console.url.startswith(origin)
        assert violations.of(console) == [] and violations.of(page) == []  # the policy, in production mode
    finally:
        context.close()
    code = ("from audit.models import AuditEntry\nresult = sorted(set(AuditEntry.objects.filter("
            "action__startswith='console.').values_list('action', 'client_addr')))\n")
    wait_for(lambda: ["console.open", "127.0.0.1"] in stack.shell(code), 10, "open not audited")
    assert ["console.ticket", "127.0.0.1"] in stack.shell(code)
    assert FORGED not in str(stack.shell(code))
    access_log = stack.var_dir.parent / "vmportal.access.log"
    # nginx logs a websocket when it ends.
    wait_for(lambda: '"GET /websockify HTTP/1.1" 101' in access_log.read_text(), 10, "no websocket in the access log")
    assert "token" not in access_log.read_text()


def test_the_proxy_behind_nginx_checks_origin_and_tickets(site: tuple[ConsoleStack, str],
                                                          hosts: list[lab.LabHost]) -> None:
    stack, origin = site
    host = host_of(hosts, "demo-vga")
    uuid = virsh(host, "domuuid", "demo-vga")
    session = stack.login(USER)
    tls = ssl.create_default_context(cafile=str(stack.var_dir.parent / "cert.pem"))
    url = origin.replace("https", "wss") + "/websockify?token="

    def connect(token: str, from_origin: str) -> Stream:
        ws = ClientWebSocket({"Cookie": f"sessionid={session}"})
        return Stream(ws.open(url + token, origin=from_origin, tls_context=tls))

    [token] = stack.tickets(USER, host.name, uuid, origin=origin)  # as the console page at `origin` asks
    with pytest.raises(Exception, match="403"):
        connect(token, "https://evil.example")
    stream = connect(token, origin)
    assert "demo-vga" in rfb_handshake(stream)[2]
    stream.ws.close()
    with pytest.raises(Exception, match="403"):
        connect(token, origin)  # used
    code = ("from audit.models import AuditEntry\nresult = list(AuditEntry.objects.filter(action='console.open')"
            ".values_list('client_addr', 'result'))\n")
    wait_for(lambda: ["127.0.0.1", "succeeded"] in stack.shell(code), 10, "open not audited")
