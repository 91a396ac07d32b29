"""Makes a fresh install usable: an admin account and, without any host, the embedded test host."""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from accounts.models import User
from domains import services
from domains.models import Host

DEFAULT_HOST_NAME = "embedded"
DEFAULT_HOST_URI = "test:///default"


class Command(BaseCommand):
    help = "Create the first admin (its password kept in var/admin-password) and a default host."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--no-default-host", action="store_true",
                            help="do not register test:///default when no host exists")

    def handle(self, *args: Any, username: str, no_default_host: bool, **options: Any) -> None:
        password_file = settings.VAR_DIR / "admin-password"
        admin = User.objects.filter(username=username).first()
        if admin is None:
            password = secrets.token_urlsafe(12)
            admin = User.objects.create_superuser(username=username, email="", password=password)
            settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
            # Created 0600: a chmod after writing would leave the password readable for a moment.
            descriptor = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(password + "\n")
        if not no_default_host and not Host.objects.exists():
            services.host_register(actor=admin, name=DEFAULT_HOST_NAME, uri=DEFAULT_HOST_URI)
        password = password_file.read_text().strip() if password_file.exists() else "(set by you)"
        self.stdout.write(f"Admin login: {username} / {password}")
