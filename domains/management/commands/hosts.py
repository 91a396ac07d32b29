"""`manage.py hosts add NAME URI`, `hosts list`, `hosts remove NAME`: host registration from a shell."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from domains import services
from domains.models import Host


def system_actor() -> User:
    """Shell commands act as the first admin, so their changes are audited like the UI's."""
    actor = User.objects.filter(role=User.Role.ADMIN, is_active=True).order_by("pk").first()
    if actor is None:
        raise CommandError("Create an admin first (manage.py bootstrap or createsuperuser).")
    return actor


class Command(BaseCommand):
    help = "Register, list and remove hypervisor hosts."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="register a host (or update its URI)")
        add.add_argument("name")
        add.add_argument("uri")
        add.add_argument("--disabled", action="store_true")
        add.add_argument("--migration-address", help="the address other hosts send migrations to (kept if omitted)")
        sub.add_parser("list", help="list registered hosts")
        remove = sub.add_parser("remove", help="remove a host from the dashboard")
        remove.add_argument("name")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        actor = system_actor()
        try:
            if action == "add":
                host = Host.objects.filter(name=options["name"]).first()
                enabled = not options["disabled"]
                address = options["migration_address"]
                if host is None:
                    services.host_register(actor=actor, name=options["name"], uri=options["uri"], enabled=enabled,
                                           migration_address=address or "")
                else:
                    services.host_update(actor=actor, host=host, uri=options["uri"], enabled=enabled,
                                         migration_address=address)
                self.stdout.write(f"{options['name']}: {options['uri']}")
            elif action == "list":
                for host in Host.objects.all():
                    self.stdout.write(f"{host.name}\t{host.uri}\t{'enabled' if host.enabled else 'disabled'}")
            else:
                host = Host.objects.filter(name=options["name"]).first()
                if host is None:
                    raise CommandError(f"No host named {options['name']}.")
                services.host_delete(actor=actor, host=host)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error
