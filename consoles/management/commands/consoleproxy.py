"""`manage.py consoleproxy`: websockify's proxy, guarded by console tickets, serving no files."""

from __future__ import annotations

import logging
import resource
import signal
import sys
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from consoles import conf
from consoles.proxy import ConsoleProxyServer, MaskTickets
from domains import virt

SWITCH_INTERVAL_SECONDS = 0.0005
STOP_WAIT_SECONDS = 5  # a stopping proxy waits this long for its consoles to audit their close


class Stop(Exception):
    """SIGTERM or SIGINT: leave serve_forever in the main thread."""


class Command(BaseCommand):
    help = "Run the console proxy (websockify) that browsers' noVNC and spice-html5 connect to."

    def add_arguments(self, parser: CommandParser) -> None:
        host, port = conf.proxy_bind()
        parser.add_argument("--bind", default=f"{host}:{port}",
                            help="HOST:PORT to listen on (VMPORTAL_CONSOLE_PROXY_BIND, default %(default)s)")
        parser.add_argument("--heartbeat", type=int, default=30, help="seconds between websocket pings")

    def handle(self, *args: Any, **options: Any) -> None:
        host, _, port = str(options["bind"]).rpartition(":")
        masker = MaskTickets()
        root = logging.getLogger()
        for handler in root.handlers:
            handler.addFilter(masker)
        logging.getLogger("websocket").addFilter(masker)
        if options["verbosity"] > 1:
            root.setLevel(logging.DEBUG)
        raise_open_files_limit()
        # One process serves every console, each in a thread: libvirt's event loop keeps its pooled
        # connections alive (keepalive), as in the other long-lived processes.
        virt.initialize()
        # A relay waiting for the interpreter gets it within this, not CPython's 5 ms, from the thread
        # re-checking consoles (Python work): a console's round trip stays well under a millisecond.
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        server = ConsoleProxyServer(host=host.strip("[]") or "127.0.0.1", port=int(port),
                                    heartbeat=options["heartbeat"], verbose=options["verbosity"] > 1)
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, _stop)
        try:
            server.serve_forever()
        except Stop:
            pass
        finally:
            server.stop("proxy stopped", wait=STOP_WAIT_SECONDS)


def _stop(number: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(number).name)


def raise_open_files_limit() -> None:
    """Each console holds two descriptors or more (browser, display, a TLS socket pair, an SSH channel):
    the usual soft limit of 1024 would refuse the five hundredth; the hard limit is the system's word."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
