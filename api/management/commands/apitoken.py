"""`manage.py apitoken create USER [--name N] [--expires DAYS] [--read-only]`: prints the token once."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from api import services


class Command(BaseCommand):
    help = "Create an API token for a user and print it (only its hash is kept: it cannot be shown again)."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="command", required=True)
        create = commands.add_parser("create", help="create a token")
        create.add_argument("username")
        create.add_argument("--name", default="cli", help="shown in the audit log next to what the token did")
        create.add_argument("--expires", type=int, metavar="DAYS", help="expires after this many days (default: never)")
        create.add_argument("--read-only", action="store_true", help="the token refuses every change")

    def handle(self, *args: Any, command: str, username: str, name: str, expires: int | None, read_only: bool,
               **options: Any) -> None:
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {username}.")
        try:
            _token, text = services.token_create(actor=user, name=name, expires_days=expires, read_only=read_only)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        self.stdout.write(text)
