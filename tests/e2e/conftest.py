"""The end-to-end layer: the real server under daphne, driven by Debian's Chromium through Playwright.

One daphne process serves the whole session from its own throw-away var dir (SQLite database and
collected static files), started the way production starts it. Tests seed that database through
`manage.py`, in the server's own environment, and never touch Django's test database.

Every fixture here is a plain synchronous one: Playwright's sync API refuses to run inside an asyncio
loop, and pytest-asyncio (asyncio_mode=auto) only gives a loop to `async def` tests and fixtures.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError

import lab
from tests.conftest import LAB_HOSTS
from tests.integration.helpers import host_of, virsh
from tests.support.consoles import ConsoleStack
from tests.support.portal import (
    collected_static,
    free_port,
    migrated_database,
    portal_env,
    stop_process,
    wait_for_port,
)

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # the browser talks to the loopback server only, whatever the environment says
]
RESULTS_DIR = REPO / "test-results"
PASSWORD = "correct horse battery staple"
STARTUP_SECONDS = 30
TIMEOUT_MS = 10_000


@dataclass
class LiveApp:
    """The running server, and `manage.py` in its environment to seed its database."""

    url: str
    env: dict[str, str]
    var_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def manage(self, *args: str) -> str:
        """Run `manage.py <args>` against the server's database; its stdout, or a failure with its output."""
        return self.finish(self.start_manage(*args))

    def start_manage(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(VENV_BIN / "python"), str(REPO / "manage.py"), *args],
            cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def finish(self, command: subprocess.Popen[str]) -> str:
        try:
            stdout, stderr = command.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            command.kill()
            stdout, stderr = command.communicate()
        if command.returncode != 0:
            pytest.fail(f"{command.args!r} exited {command.returncode}:\n{stdout}\n{stderr}")
        return stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "--no-imports", "-c", code)

    def create_user(self, username: str, password: str = PASSWORD, role: str = "tenant") -> str:
        self.create_users([(username, password, role)])
        return username

    def create_users(self, users: Iterable[tuple[str, str, str]]) -> None:
        """Several (username, password, role) at once: one `manage.py` start-up instead of one each."""
        users = list(users)
        self.shell(
            "from accounts.models import User\n"
            "from django.contrib.auth.hashers import make_password\n"
            f"users = {users!r}\n"
            # Hashing is deliberately slow: once per distinct password, not once per user.
            "hashes = {password: make_password(password) for _name, password, _role in users}\n"
            "for username, password, role in users:\n"
            "    User.objects.create(username=username, password=hashes[password], role=role)\n"
        )

    def grant(self, *, username: str, host: str, uuid: str, can_operate: bool = False,
              can_console: bool = False) -> None:
        self.shell(
            "from accounts.models import User\n"
            "from domains.models import Grant, Host\n"
            f"Grant.objects.create(host=Host.objects.get(name={host!r}), domain_uuid={uuid!r},"
            f" user=User.objects.get(username={username!r}), can_operate={can_operate!r},"
            f" can_console={can_console!r})\n"
        )

    @property
    def admin_password(self) -> str:
        return (self.var_dir / "admin-password").read_text().strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"daphne died (exit {self.process.returncode}); its log:\n{self.log()}")


@pytest.fixture(scope="session")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    var_dir = tmp_path_factory.mktemp("vmportal-var")
    port = free_port()
    # Usage sampled every 2 s: the usage charts follow a few real samples within seconds.
    app = LiveApp(url=f"http://127.0.0.1:{port}", env=portal_env(var_dir, VMPORTAL_USAGE_INTERVAL="2"),
                  var_dir=var_dir, log_path=var_dir / "daphne.log")
    serving = False
    try:
        # WhiteNoise indexes STATIC_ROOT when daphne loads the application: collected before it starts.
        migrated_database(var_dir)
        collected_static(var_dir)
        bootstrap = app.start_manage("bootstrap", "--no-default-host")
        with app.log_path.open("wb") as log:
            app.process = subprocess.Popen(
                [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "vmportal.asgi:application"],
                cwd=REPO, env=app.env, stdout=log, stderr=subprocess.STDOUT,
            )
        app.finish(bootstrap)
        try:
            wait_for_port(port, app.process, app.log_path, timeout=STARTUP_SECONDS)
        except RuntimeError as error:
            pytest.fail(f"daphne did not start: {error}")
        serving = True
        yield app
    finally:
        died = app.process is not None and app.process.poll() is not None
        if app.process is not None and not died:
            stop_process(app.process)
    if serving and died:
        pytest.fail(f"daphne died during the session (exit {app.process.returncode}); its log:\n{app.log()}")


@dataclass(frozen=True)
class LabHost:
    """The `lab-xml` host: a libvirt test-driver inventory whose VMs are known in advance.

    See what it holds with `virsh -c test://$PWD/tests/e2e/lab-inventory.xml list --all`.
    """

    name: str
    uri: str
    uuids: dict[str, str]


LAB_INVENTORY = Path(__file__).resolve().parent / "lab-inventory.xml"


@pytest.fixture(scope="session")
def lab_host(live_app: LiveApp) -> LabHost:
    uri = f"test://{LAB_INVENTORY}"
    live_app.manage("hosts", "add", "lab-xml", uri)
    inventory = ElementTree.parse(LAB_INVENTORY).getroot()  # noqa: S314 (our own file, not user input)
    uuids = {domain.findtext("name", ""): domain.findtext("uuid", "") for domain in inventory.iter("domain")}
    return LabHost(name="lab-xml", uri=uri, uuids=uuids)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True
    return report



@pytest.fixture
def page(browser: Browser, live_app: LiveApp, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page in a fresh context (no cookies, no storage); a screenshot in test-results/ if the test fails."""
    live_app.check_alive()
    context = browser.new_context(base_url=live_app.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    if request.node.stash.get(_FAILED, False):
        RESULTS_DIR.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)
        with suppress(PlaywrightError):  # a crashed page has no picture to give; the failure says enough
            page.screenshot(path=str(RESULTS_DIR / f"{name}.png"), full_page=True)
    context.close()


def login(page: Page, username: str, password: str = PASSWORD) -> None:
    """Log in through the login form, as a person would, and land on the domain list."""
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.locator("main form").get_by_role("button", name="Log in").click()
    if answer.value.status != 302:
        page.wait_for_load_state()
        pytest.fail(f"logging in as {username} answered {answer.value.status}:\n{page.locator('body').inner_text()}")
    page.wait_for_url(re.compile(r"/domains/"))


@contextmanager
def inventory_host(live_app: LiveApp, directory: Path, name: str, inventory: str) -> Iterator[str]:
    """A host of a module's own over a test:// inventory, removed afterwards so other tests' lists never
    see its VMs."""
    path = directory / f"{name}.xml"
    path.write_text(inventory)
    live_app.manage("hosts", "add", name, f"test://{path}")
    try:
        yield name
    finally:
        live_app.manage("hosts", "remove", name)


# --- Portals as `bin/run` runs them (daphne, the console proxy on another port), for the console tabs. ---

CONSOLE_CONNECT_MS = 30_000


@pytest.fixture(scope="module")
def hosts(lab_session: None) -> list[lab.LabHost]:
    """The lab's hosts with the demo guests, for a module whose tests open their consoles."""
    return lab.up(hosts=LAB_HOSTS)


@contextmanager
def console_portal(directory: Path, hosts: list[lab.LabHost], grants: dict[str, tuple[str, ...]], *,
                   admins: tuple[str, ...] = (), proxy: bool = True,
                   settings: dict[str, str] | None = None) -> Iterator[ConsoleStack]:
    """A portal with its own database, each user granted the named lab guests; with the console proxy on
    another port of the page's host (VMPORTAL_CONSOLE_URL=":PORT/websockify") unless `proxy` is False.
    Its address is in settings["url"]."""
    proxy_port = free_port() if proxy else None
    stack = ConsoleStack(directory, settings={
        **({"VMPORTAL_CONSOLE_URL": f":{proxy_port}/websockify"} if proxy_port else {}), **(settings or {})})
    try:
        stack.setup({host.name: host.uri for host in hosts})
        for username, guests in grants.items():
            stack.user(username, grants=tuple((host_of(hosts, guest).name, virsh(host_of(hosts, guest), "domuuid",
                                                                                     guest)) for guest in guests))
        for username in admins:
            stack.user(username, role="admin")
        if proxy_port is not None:
            stack.proxy(proxy_port)
        stack.settings["url"] = f"http://127.0.0.1:{stack.daphne()}"
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def context(browser: Browser, portal: ConsoleStack) -> Iterator[BrowserContext]:
    """A browser context on the module's `portal`."""
    context = browser.new_context(base_url=portal.settings["url"], viewport={"width": 1280, "height": 900})
    context.set_default_timeout(CONSOLE_CONNECT_MS)
    yield context
    context.close()


RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || "inline"}`
                              + ` at ${event.sourceFile}:${event.lineNumber}`);
});
"""


class Violations:
    """What the browser blocked under the Content-Security-Policy, in every page of the context."""

    def __init__(self, context: BrowserContext) -> None:
        self.messages: list[str] = []
        context.add_init_script(RECORD_VIOLATIONS)
        context.on("console", lambda message: self.messages.append(message.text)
                   if "Content Security Policy" in message.text else None)

    def of(self, page: Page) -> list[str]:
        return [*page.evaluate("window.__cspViolations"), *self.messages]
