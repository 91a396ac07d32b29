"""Waiting for sockets with poll(2), as select(2) would answer, without select's limit.

select takes only descriptors under 1024 (FD_SETSIZE), and one proxy process relaying 200 consoles holds
more than that: each console has its browser's socket, its display's, and for a TLS display a socket pair.
"""

from __future__ import annotations

import math
import select
from collections.abc import Sequence
from typing import Protocol, TypeVar

# As select does, a socket that hung up or failed counts as ready: the next read or write says how.
_FAILED = select.POLLHUP | select.POLLERR | select.POLLNVAL
_READABLE = select.POLLIN | select.POLLPRI | _FAILED
_WRITABLE = select.POLLOUT | _FAILED


class Pollable(Protocol):
    def fileno(self) -> int: ...


S = TypeVar("S", bound=Pollable)


def ready(readers: Sequence[S], writers: Sequence[S] = (), timeout: float | None = None) -> tuple[list[S], list[S]]:
    """The readers that can be read and the writers that can be written, after at most timeout seconds."""
    poller = select.poll()
    wanted: dict[int, int] = {}
    for sock in readers:
        wanted[sock.fileno()] = wanted.get(sock.fileno(), 0) | select.POLLIN | select.POLLPRI
    for sock in writers:
        wanted[sock.fileno()] = wanted.get(sock.fileno(), 0) | select.POLLOUT
    for descriptor, events in wanted.items():
        poller.register(descriptor, events)  # a closed socket's fileno() is -1: ValueError, as select raises
    happened = dict(poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000))))
    return ([sock for sock in readers if happened.get(sock.fileno(), 0) & _READABLE],
            [sock for sock in writers if happened.get(sock.fileno(), 0) & _WRITABLE])
