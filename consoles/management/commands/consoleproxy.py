"""`manage.py consoleproxy`: websockify's proxy, guarded by console tickets, serving no files."""

from __future__ import annotations

import logging
import multiprocessing
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from consoles import conf
from consoles.proxy import MaskTickets, build_proxy


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
        # libvirt connections, so the parent holds none when it forks. Nor does it run libvirt's event
        # loop: a child forked while that thread held the loop's lock would hang at its first libvirt
        # call (the child only asks libvirt for the display's address, which needs no event loop).
        multiprocessing.set_start_method("fork", force=True)
        connections.close_all()
        proxy = build_proxy(host=host.strip("[]") or "127.0.0.1", port=int(port), heartbeat=options["heartbeat"],
                            verbose=options["verbosity"] > 1)
        proxy.start_server()
