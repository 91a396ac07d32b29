"""Helpers for the console tests and benchmark: a blocking websocket client, a tiny RFB viewer, a portal.

Not used by the running portal. The client is websockify's own WebSocket class, taught to send a
query string and extra headers (Origin, Cookie), which its `connect()` leaves out.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockify.websocket import WebSocket, WebSocketWantReadError

from tests.support.portal import (
    REPO,
    collected_static,
    free_port,
    migrated_database,
    portal_env,
    session_code,
    stop_process,
    wait_for_port,
)

CLIENT_READ = 1 << 20


class ClientWebSocket(WebSocket):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__()
        self._extra_headers = headers
        self._request_target = "/"

    def open(self, url: str, *, origin: str | None = None, timeout: float = 10.0,
             tls_context: ssl.SSLContext | None = None) -> ClientWebSocket:
        parts = urlsplit(url)
        self._request_target = parts.path + (f"?{parts.query}" if parts.query else "")
        if parts.scheme == "wss":
            # websockify's connect() verifies against the system CAs; tests bring their own context.
            port = parts.port or 443
            raw = socket.create_connection((parts.hostname, port), timeout=timeout)
            context = tls_context or ssl.create_default_context()
            self.socket = context.wrap_socket(raw, server_hostname=parts.hostname)
            self._state = "headers"
        self.connect(url, origin=origin)
        self.socket.settimeout(timeout)
        return self

    def _recv(self) -> bool:
        """What has arrived, up to 1 MiB, as a browser (and the benchmark's raw TCP client) reads it.

        websockify's own reads 4 KiB at a time into a growing bytes object: a screen of 640x480 pixels
        (1.2 MB) would cost this client 300 reads and copying quadratic in its size.
        """
        data = self.socket.recv(CLIENT_READ)
        if not data:
            return False
        while isinstance(self.socket, ssl.SSLSocket) and self.socket.pending():  # decrypted, not yet read
            data += self.socket.recv(CLIENT_READ)
        self._recv_buffer += data
        return True

    def send_request(self, type: str, path: str) -> None:  # noqa: A002 - websockify's signature
        super().send_request(type, self._request_target)

    def end_headers(self) -> None:
        for name, value in self._extra_headers.items():
            self.send_header(name, value)
        super().end_headers()


class Stream:
    """Exact reads and whole writes over a ClientWebSocket."""

    def __init__(self, ws: ClientWebSocket) -> None:
        self.ws, self.buffer, self.received = ws, b"", 0

    def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.buffer += self.chunk()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def chunk(self) -> bytes:
        """Whatever arrives next; ConnectionError when the proxy closes."""
        while True:
            try:
                message = self.ws.recvmsg()
            except WebSocketWantReadError:
                continue
            except OSError:
                # Answering the peer's close frame fails once the peer has hung up: report its close.
                if self.ws.close_code is None:
                    raise
                message = None
            if message is None:
                raise ConnectionError(f"closed: {self.ws.close_code} {self.ws.close_reason}")
            self.received += len(message)
            return bytes(message)

    def write(self, data: bytes) -> None:
        self.ws.sendmsg(data)


@dataclass(frozen=True)
class Framebuffer:
    width: int
    height: int
    name: str
    pixels: bytes  # 32-bit little-endian true colour, as requested


def rfb_handshake(stream: Stream) -> tuple[int, int, str]:
    """RFB 3.8 up to ServerInit with security type None (the proxy answers any display password)."""
    version = stream.read(12)
    if not version.startswith(b"RFB 003."):
        raise AssertionError(f"not RFB: {version!r}")
    stream.write(b"RFB 003.008\n")
    types = stream.read(stream.read(1)[0])
    if 1 not in types:
        raise AssertionError(f"security types {list(types)} do not include None")
    stream.write(b"\x01")
    result = struct.unpack(">I", stream.read(4))[0]
    if result != 0:
        raise AssertionError("security result: failed")
    stream.write(b"\x01")  # ClientInit: shared
    width, height = struct.unpack(">HH", stream.read(4))
    stream.read(16)  # the server's pixel format
    name = stream.read(struct.unpack(">I", stream.read(4))[0]).decode("utf-8", "replace")
    # 32 bpp, depth 24, little endian, true colour, 8 bits each, shifts 16/8/0; raw encoding only.
    stream.write(struct.pack(">B3xBBBBHHHBBB3x", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
    stream.write(struct.pack(">BxHi", 2, 1, 0))
    return width, height, name


def request_frame(stream: Stream, width: int, height: int, *, incremental: bool = False) -> None:
    stream.write(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, width, height))


def read_framebuffer_update(stream: Stream, width: int, height: int) -> bytes:
    """Reads server messages until a FramebufferUpdate; returns its raw pixels (other rects skipped)."""
    pixels = bytearray(width * height * 4)
    while True:
        kind = stream.read(1)[0]
        if kind == 0:
            break
        if kind == 2:  # bell
            continue
        if kind == 3:  # server cut text
            stream.read(3)
            stream.read(struct.unpack(">I", stream.read(4))[0])
            continue
        if kind == 1:  # colour map entries (not with true colour, but harmless)
            _pad, _first, count = struct.unpack(">BHH", stream.read(5))
            stream.read(6 * count)
            continue
        raise AssertionError(f"unexpected RFB server message {kind}")
    stream.read(1)
    for _ in range(struct.unpack(">H", stream.read(2))[0]):
        x, y, w, h, encoding = struct.unpack(">HHHHi", stream.read(12))
        if encoding == 0:
            data = stream.read(w * h * 4)
            for row in range(h):
                start = ((y + row) * width + x) * 4
                pixels[start:start + w * 4] = data[row * w * 4:(row + 1) * w * 4]
        elif encoding == -223:  # DesktopSize: the screen changed size
            width, height = w, h
            pixels = bytearray(width * height * 4)
        else:
            raise AssertionError(f"unexpected encoding {encoding}")
    return bytes(pixels)


def close_reason(stream: Stream, width: int, height: int, timeout: float = 15) -> str:
    """Keeps the console busy until the proxy closes it; returns how it closed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # the proxy may close between our write and our read
            request_frame(stream, width, height, incremental=True)
        try:
            stream.chunk()
        except ConnectionError as closed:
            return str(closed)
    raise AssertionError(f"the console stayed open for {timeout} s")


def display_host_uri(path: Path, displays: dict[str, tuple[str, int]]) -> str:
    """A libvirt test-driver host whose running VMs ({name: (uuid, port)}) have VNC displays on loopback ports:
    the proxy finds them as it finds a guest's."""
    path.write_text("<node>" + "".join(
        f"<domain type='test'><name>{name}</name><uuid>{uuid}</uuid><memory>65536</memory><vcpu>1</vcpu>"
        f"<os><type>hvm</type></os><devices><graphics type='vnc' port='{port}' autoport='no'>"
        "<listen type='address' address='127.0.0.1'/></graphics></devices></domain>"
        for name, (uuid, port) in displays.items()) + "</node>")
    return f"test://{path}"


class _LoopbackDisplay:
    """A display on a loopback port serving each connection on a thread of its own (`_serve`)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        raise NotImplementedError


class NamedDisplay(_LoopbackDisplay):
    """A loopback display that sends `<name>\\n` to each connection, then echoes what it receives."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(f"{self.name}\n".encode())
            while data := conn.recv(4096):
                conn.sendall(data)


class BlankRfbDisplay(_LoopbackDisplay):
    """A loopback VNC display without a password, as a browser's viewer needs one: RFB 3.8, security None, a
    blank `width` x `height` screen; what the viewer sends afterwards is read and left unanswered."""

    def __init__(self, width: int = 640, height: int = 400, name: str = "blank") -> None:
        self.width, self.height, self.name = width, height, name
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        def read(count: int) -> bytes:
            data = b""
            while len(data) < count and (chunk := conn.recv(count - len(data))):
                data += chunk
            return data

        with conn, contextlib.suppress(OSError):
            conn.sendall(b"RFB 003.008\n")
            read(12)  # the viewer's version
            conn.sendall(bytes([1, 1]))  # one security type: None
            read(1)
            conn.sendall(struct.pack(">I", 0))  # security result: OK
            read(1)  # ClientInit
            pixel_format = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
            name = self.name.encode()
            conn.sendall(struct.pack(">HH", self.width, self.height) + pixel_format + struct.pack(">I", len(name))
                         + name)
            while conn.recv(4096):
                pass


def greeting(stream: Stream) -> str:
    line = b""
    while not line.endswith(b"\n"):
        line += stream.read(1)
    return line.decode().strip()


def echoes(stream: Stream) -> bool:
    stream.write(b"ping")
    return stream.read(4) == b"ping"


def wait_for(predicate: object, timeout: float, message: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(interval)


# --- a whole portal in a throw-away var dir: manage.py, the console proxy, daphne ---------------------

PAGE_ORIGIN = "http://127.0.0.1:8000"  # the portal page tickets are issued to, unless a test says otherwise


@dataclass
class ConsoleStack:
    """A portal with its own SQLite database; `proxy()` and `daphne()` start its servers."""

    var_dir: Path
    settings: dict[str, str] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return portal_env(self.var_dir, **self.settings)

    def manage(self, *args: str) -> str:
        result = subprocess.run([sys.executable, str(REPO / "manage.py"), *args], cwd=REPO, env=self.env,
                                capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)}: {result.stdout}\n{result.stderr}")
        return result.stdout

    def shell(self, code: str) -> Any:
        """Runs code in the stack's Django; returns what it assigned to `result`, through JSON."""
        out = self.manage("shell", "--no-imports", "-c",
                          "import json\nresult = None\n" + code + "\nprint('@@' + json.dumps(result))")
        return json.loads(out.rsplit("@@", 1)[1])

    def setup(self, hosts: dict[str, str]) -> None:
        migrated_database(self.var_dir)
        # An admin, which registers the hosts: the commands in one start-up of Django (seconds each on CI).
        self.shell("from django.core.management import call_command\n"
                   "call_command('bootstrap', '--no-default-host')\n"
                   f"for name, uri in {list(hosts.items())!r}:\n"
                   "    call_command('hosts', 'add', name, uri)\n")

    def user(self, username: str, *, role: str = "tenant", grants: tuple[tuple[str, str], ...] = (),
             password: str = "correct horse battery staple") -> None:  # noqa: S107 - test users only
        """A user with the console right on each (host name, domain UUID) of grants."""
        self.shell(
            "from accounts.models import User\nfrom domains.models import Grant, Host\n"
            f"user = User.objects.create_user({username!r}, password={password!r}, role={role!r})\n"
            f"for host, uuid in {list(grants)!r}:\n"
            "    Grant.objects.create(host=Host.objects.get(name=host), domain_uuid=uuid, user=user,"
            " can_console=True)\n")

    def login(self, username: str) -> str:
        """A session key for the user, as a login would create it."""
        return str(self.shell(session_code(username) + "result = session_key\n"))

    def tickets(self, username: str, host: str, uuid: str, *, origin: str = PAGE_ORIGIN,
                serial: bool = False, consoles: int = 1) -> list[str]:
        """Tickets as a console page at `origin` asks for them (its serial console's with `serial`), for as many
        consoles, in one shell: they open from that origin only."""
        return list(self.shell(
            "from consoles import services\nfrom accounts.models import User\n"
            f"issued = [services.console_tickets_issue(actor=User.objects.get(username={username!r}),"
            f" host_name={host!r}, uuid={uuid!r}, origin={origin!r}, client_addr='127.0.0.1', serial={serial!r})"
            f" for _ in range({consoles})]\n"
            "result = [token for batch in issued for token in batch.tokens]\n"))

    def _start(self, name: str, args: list[str], port: int) -> subprocess.Popen[bytes]:
        log = self.var_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(args, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        wait_for_port(port, process, log)
        return process

    def proxy(self, port: int | None = None) -> int:
        port = port or free_port()
        self._start("consoleproxy", [sys.executable, str(REPO / "manage.py"), "consoleproxy",
                                     "--bind", f"127.0.0.1:{port}"], port)
        return port

    def daphne(self, port: int | None = None) -> int:
        port = port or free_port()
        collected_static(self.var_dir)
        daphne = str(Path(sys.executable).parent / "daphne")
        self._start("daphne", [daphne, "-b", "127.0.0.1", "-p", str(port), "vmportal.asgi:application"], port)
        return port

    def log(self, name: str) -> str:
        path = self.var_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process)
        self.processes.clear()
