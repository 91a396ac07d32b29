"""manage.py collectstats --once: one usage sample of every enabled host, kept as the supervisor keeps theirs.

In normal running the supervisor's sampling process (domains.sampling, this command with --serve) samples
every USAGE_INTERVAL_SECONDS. --once takes one sample per host now (for cron-like use, and for tests), takes
the rates from the host's sample stored before (by the supervisor or by an earlier run), adds them to the
history's buckets and prunes what is too old. A host that does not answer is reported and skipped.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from domains import history, sampling, usage, virt
from domains.models import Host, HostUsage


class Command(BaseCommand):
    help = "Take one usage sample of every enabled host and keep it (the host watchers do this when running)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one sample of every enabled host, then exit")
        parser.add_argument("--serve", action="store_true",
                            help="the supervisor's sampling process: hosts on stdin, frames on stdout")
        parser.add_argument("--interval", type=float, default=None, help="seconds between samples (--serve)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["serve"]:
            virt.initialize()  # libvirt's event loop: the samplers' keepalive pings
            interval = options["interval"] or settings.USAGE_INTERVAL_SECONDS
            # The frames get stdout to themselves: whatever else prints (a library, a warning) goes to stderr.
            frames = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
            sampling.serve(sys.stdin, frames, interval=interval)
            return
        if not options["once"]:
            raise CommandError("The dashboard's supervisor collects while it runs; --once takes one sample now.")
        hosts = {host.pk: host for host in Host.objects.filter(enabled=True)}
        samples = virt.fan_out.run({pk: host.uri for pk, host in hosts.items()}, virt.usage.sample_host,
                                   settings.HOST_DEADLINE_SECONDS)
        collector = usage.Collector()
        for pk, sample in samples.items():
            if isinstance(sample, virt.VirtError):
                self.stderr.write(f"{hosts[pk].name}: not sampled: {sample.detail}")
                continue
            collected = collector.collect(pk, sample, previous=usage.stored_counters(pk))
            with transaction.atomic():
                history.merge([*collected.points, *collector.forget(pk)])
                HostUsage.objects.update_or_create(host_id=pk, defaults=usage.latest_row(collected))
            self.stdout.write(f"{hosts[pk].name}: {len(sample.domains)} VMs sampled, "
                              f"{len(collected.domains)} with rates since the sample before")
        history.prune(time.time())
