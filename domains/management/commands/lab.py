"""`manage.py lab up [--hosts N] [--no-demo] [--no-network] | status | down`.

The real libvirt lab, its hosts registered as dashboard hosts.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

import lab
from accounts.models import User
from domains import services
from domains.management.commands.hosts import system_actor
from domains.models import Host


class Command(BaseCommand):
    help = "Start, inspect or stop the lab: several libvirtd hosts with tiny guests on this machine."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        up = sub.add_parser("up", help="start the lab hosts and demo VMs, register them as hosts")
        up.add_argument("--hosts", type=int, default=2)
        up.add_argument("--no-demo", action="store_true", help="start the hosts without the demo VMs")
        up.add_argument(
            "--no-network", action="store_true",
            help="leave the hosts off the lab network and register their unix sockets (as VMPORTAL_LAB_NETWORK=0)",
        )
        sub.add_parser("status", help="show the lab hosts and their daemons")
        sub.add_parser("down", help="stop every lab guest and daemon; the hosts stay registered, disabled")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        try:
            if action == "up":
                self._up(options["hosts"], demo_inventory=not options["no_demo"],
                         network=False if options["no_network"] else None)
            elif action == "status":
                for host in lab.status():
                    state = "running" if host.running else "stopped"
                    vms = f"{host.active_domains}/{host.domains} VMs active"
                    self.stdout.write(f"{host.name}\t{state}\t{vms}\t{host.uri}")
            else:
                lab.down()
                Host.objects.filter(name__startswith="lab").update(enabled=False)
                self.stdout.write("lab stopped")
        except lab.LabError as error:
            raise CommandError(str(error)) from error

    def _up(self, count: int, *, demo_inventory: bool, network: bool | None) -> None:
        usable, reason = lab.available()
        if not usable:
            raise CommandError(f"The lab cannot run here: {reason}")
        actor = system_actor()
        for lab_host in lab.up(hosts=count, demo_inventory=demo_inventory, network=network):
            # Over SSH or TLS, as users register theirs (the unix socket without the lab network).
            self._register(actor, lab_host.name, lab_host.uri, lab_host.migration_address)

    def _register(self, actor: User, name: str, uri: str, migration_address: str) -> None:
        host = Host.objects.filter(name=name).first()
        if host is None:
            services.host_register(actor=actor, name=name, uri=uri, migration_address=migration_address)
        else:
            services.host_update(actor=actor, host=host, uri=uri, enabled=True, migration_address=migration_address)
        self.stdout.write(f"{name}: {uri}")
