"""`manage.py expireuploads`: deletes the uploads that got no chunk for a while, with their partial volumes.

Run it from cron or a timer; starting an upload runs the same (services.uploads_expire), so a user's
abandoned partial volumes never count against its quota for long.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from storage import services


class Command(BaseCommand):
    help = "Delete abandoned uploads and their partial volumes."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"{services.uploads_expire()} abandoned upload(s) deleted.")
