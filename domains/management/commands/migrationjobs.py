"""`manage.py migrationjobs list` and `migrationjobs reconcile`: migration jobs from a shell.

`reconcile` settles jobs whose runner is gone (a restarted dashboard): it follows a migration libvirt
still runs, or decides the result from where the VM now runs. The live supervisor does the same every
15 s; both may run at once, and a job is still concluded once (services.migration_settle).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from domains import migration_jobs, services
from domains.models import MigrationJob


class Command(BaseCommand):
    help = "List migration jobs, or settle those no runner follows any more."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="the latest jobs")
        reconcile = sub.add_parser("reconcile", help="settle jobs whose runner is gone")
        reconcile.add_argument("--wait", type=float, default=0.0,
                               help="seconds to wait for adopted migrations to end (this process follows them)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            for job in MigrationJob.objects.all()[:50]:
                self.stdout.write(f"{job.pk}\t{job.created_at:%Y-%m-%d %H:%M:%S}\t{job}\t{job.error}")
            return
        for job in services.migrations_settle_stale():
            if options["wait"] and job.active:
                migration_jobs.wait(job.pk, options["wait"])
                job.refresh_from_db()
            self.stdout.write(f"{job.pk}\t{job}\t{job.error or job.note}")
