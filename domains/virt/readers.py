"""The thread of a host's background reader: a watcher's agents' addresses and DHCP leases, the sampling
process's usage samples.

Each reader works on a thread (and connection) of its own, so a slow answer never holds up the watcher's
events; its owner starts and stops it with itself, and a watcher's reader that died makes the watcher not
alive.
"""

from __future__ import annotations

import threading
from typing import Self


class HostReader:
    """Runs `_run` on its own daemon thread; `_run` returns soon after `_stopping` is set."""

    def __init__(self, thread_name: str) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def _wake_up(self) -> None:
        """Wakes a `_run` that waits on something else than `_stopping`, so it sees it set."""

    def start(self) -> Self:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake_up()
        if self._thread.is_alive():
            self._thread.join(timeout)
