"""The sampling process: usage collection out of the web process's interpreter.

Sampling 20 hosts of 500 VMs and turning their counters into rates is about two seconds of Python every
interval. Run on threads of the daphne process that serves the pages, it held the interpreter's lock while
they waited: the 10,000-VM list's p95 went from 34 to 169 ms (bench/list_scale.py). So the supervisor
(domains.supervisor) runs it as its child, `manage.py collectstats --serve`:

- the supervisor writes the hosts to sample on the child's stdin, one JSON line each time they change:
  `[[host id, name, uri], ...]`;
- the child samples each host on a thread and connection of its own (virt.usage.host_sampler), collects one
  sample at a time (usage.Collector) and writes what is to be kept (usage.Kept) as a frame on its stdout:
  four bytes of length, then the pickled Kept;
- a host no longer listed, and every host once stdin closes (the supervisor stopping, or gone), ends with a
  frame of its open history buckets, kept rather than lost; then the child exits.

The supervisor keeps each frame (usage.keep: only the parent writes the database, the one its settings name)
and pushes the sample's rates to the host's pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import pickle  # noqa: S403 - frames between this process and its own child, on a pipe nobody else holds
import queue
import struct
import sys
import threading
from collections.abc import AsyncIterator, Iterable
from typing import IO, BinaryIO

from django.conf import settings

from . import history, usage, virt

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")
Listed = tuple[int, str, str]  # a host to sample: id, name, URI
_Sample = tuple[int, virt.usage.HostCounters | None]  # None: the host is no longer sampled


# --- The child: `manage.py collectstats --serve`. ---


def serve(commands: IO[str], frames: BinaryIO, *, interval: float) -> None:
    """Samples the hosts last listed on `commands` until it closes; each sample's Kept goes to `frames`."""
    samples: queue.Queue[_Sample | None] = queue.Queue()
    collecting = threading.Thread(target=_collect, args=(samples, frames), name="collect", daemon=True)
    collecting.start()
    samplers: dict[int, tuple[str, virt.usage.UsageSampler]] = {}  # host id: (its URI, its sampler)
    try:
        for line in commands:
            listed = {host_id: (name, uri) for host_id, name, uri in json.loads(line)}
            _stop(samplers, [host_id for host_id, (uri, _sampler) in samplers.items()
                             if host_id not in listed or listed[host_id][1] != uri], samples)
            for host_id, (name, uri) in listed.items():
                if host_id not in samplers:
                    sampled = functools.partial(lambda host_id, counters: samples.put((host_id, counters)), host_id)
                    samplers[host_id] = (uri, virt.usage.host_sampler(name=name, uri=uri, sampled=sampled,
                                                                      interval=interval).start())
    finally:
        _stop(samplers, list(samplers), samples)
        samples.put(None)
        collecting.join()


def _stop(samplers: dict[int, tuple[str, virt.usage.UsageSampler]], host_ids: Iterable[int],
          samples: queue.Queue[_Sample | None]) -> None:
    """Their samplers stopped, then their last buckets asked for: after any sample they had handed over."""
    stopping = [(host_id, samplers.pop(host_id)[1]) for host_id in host_ids]
    for _host_id, sampler in stopping:
        sampler.stop()
    for host_id, _sampler in stopping:
        samples.put((host_id, None))


def _collect(samples: queue.Queue[_Sample | None], frames: BinaryIO) -> None:
    collector = usage.Collector()
    while (item := samples.get()) is not None:
        host_id, counters = item
        try:
            kept = (usage.to_keep(collector.collect(host_id, counters)) if counters is not None
                    else usage.Kept(host_id, history.rows(collector.forget(host_id)), None))
        except Exception:  # a gap in this host's history, not the end of everybody's
            logger.exception("collecting the usage of host %s failed", host_id)
            continue
        payload = pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            frames.write(_LENGTH.pack(len(payload)) + payload)
            frames.flush()
        except (BrokenPipeError, ValueError):  # the supervisor is gone: nobody keeps what follows
            return


# --- The supervisor's side. ---


class SamplingProcess:
    """One run of the child: told the hosts to sample, read for what it kept, finished by closing its stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._listed: list[Listed] | None = None

    @classmethod
    async def start(cls, *, interval: float) -> SamplingProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(settings.BASE_DIR / "manage.py"), "collectstats", "--serve", "--interval",
            str(interval), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        return cls(process)

    @property
    def pid(self) -> int:
        return self._process.pid

    def sample(self, hosts: list[Listed]) -> None:
        """Sample these hosts from now on (and no others); said again only when they change."""
        if hosts == self._listed or self._stdin.is_closing():
            return
        self._listed = list(hosts)
        self._stdin.write(json.dumps(hosts).encode() + b"\n")

    async def kept(self) -> AsyncIterator[usage.Kept]:
        """What the child keeps, frame by frame, until it exits."""
        stdout = self._process.stdout
        assert stdout is not None  # noqa: S101 - started with a pipe
        while True:
            try:
                length, = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))
                payload = await stdout.readexactly(length)
            except asyncio.IncompleteReadError:
                return
            yield pickle.loads(payload)  # noqa: S301 - our own child's frame

    def finish(self) -> None:
        """The child samples no more: it sends each host's last buckets and exits."""
        if not self._stdin.is_closing():
            self._stdin.close()

    async def wait(self, timeout: float) -> int:
        """Its exit status; killed when it takes longer than `timeout` seconds."""
        try:
            return await asyncio.wait_for(self._process.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            return await self._process.wait()

    @property
    def _stdin(self) -> asyncio.StreamWriter:
        stdin = self._process.stdin
        assert stdin is not None  # noqa: S101 - started with a pipe
        return stdin
