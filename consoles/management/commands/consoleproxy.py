"""`manage.py consoleproxy`: websockify's proxy, guarded by console tickets, serving no files."""

from __future__ import annotations

import logging
import multiprocessing
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from consoles import conf
from consoles.proxy import MaskTickets, build_proxy
from domains import virt


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
        # websockify forks one process per connection: children must open their own database and
        # libvirt connections, so the parent holds none when it forks.
        multiprocessing.set_start_method("fork", force=True)
        connections.close_all()
        virt.initialize()
        proxy = build_proxy(host=host.strip("[]") or "127.0.0.1", port=int(port), heartbeat=options["heartbeat"],
                            verbose=options["verbosity"] > 1)
        proxy.start_server()
