"""A running domain's serial console as a byte stream: libvirt's console stream (virDomainOpenConsole).

The stream travels inside the libvirt connection itself, so it works on every transport (unix socket,
SSH, TLS) with nothing else to reach on the host. It is non-blocking and driven by libvirt's event
loop (events.initialize, which the opening process must have run before its first connection): bytes
from the guest reach `on_data` in that loop's thread, the end of the stream `on_end`, once.
"""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET  # noqa: S405 - libvirt's own XML, not untrusted input
from collections.abc import Callable
from dataclasses import dataclass

import libvirt
from django.utils.translation import gettext_lazy as _

from .connections import connection
from .graphics import ConsoleUnavailable

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_READ = libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP


@dataclass(frozen=True, slots=True)
class SerialEndpoint:
    """What a serial console ticket is bound to: the domain's run (its ID, new at each start)."""

    run_id: int
    kind: str = "serial"

    @property
    def key(self) -> str:
        return f"serial run {self.run_id}"


def has_serial(root: ET.Element) -> bool:
    """Whether a domain XML has a serial port or a console device (what virDomainOpenConsole opens)."""
    return root.find("./devices/serial") is not None or root.find("./devices/console") is not None


def serial_endpoint(uri: str, uuid: str) -> SerialEndpoint:
    """The serial console a running domain has now; ConsoleUnavailable when it has none."""
    with connection(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if not dom.isActive():
            raise ConsoleUnavailable(_("The machine is not running."))
        if not has_serial(ET.fromstring(dom.XMLDesc(0))):  # noqa: S314
            raise ConsoleUnavailable(_("This machine has no serial port or console device."))
        return SerialEndpoint(run_id=dom.ID())


class SerialConsole:
    """An open serial console: `write` sends the user's keys, `close` ends it; thread-safe."""

    def __init__(self, stream: libvirt.virStream, *, on_data: Callable[[bytes], None],
                 on_end: Callable[[str], None]) -> None:
        self._stream, self._on_data, self._on_end = stream, on_data, on_end
        self._lock = threading.Lock()
        self._unsent = bytearray()  # what the stream would not take yet (it was full)
        self._ended = False
        stream.eventAddCallback(_READ, self._event, None)

    def write(self, data: bytes) -> None:
        try:
            with self._lock:
                if self._ended:
                    return
                self._unsent += data
                self._flush()
        except libvirt.libvirtError as error:
            logger.info("writing to a serial console failed: %s", error)
            self._end("the console stream failed")

    def close(self) -> None:
        self._end("closed", notify=False)

    def _flush(self) -> None:
        """Sends what the stream takes now; the rest waits for it to become writable (lock held)."""
        while self._unsent:
            sent = self._stream.send(bytes(self._unsent))
            if sent == -2:  # would block
                break
            del self._unsent[:sent]
        self._stream.eventUpdateCallback(_READ | (libvirt.VIR_STREAM_EVENT_WRITABLE if self._unsent else 0))

    def _event(self, stream: libvirt.virStream, events: int, _opaque: object) -> None:
        try:
            if events & libvirt.VIR_STREAM_EVENT_READABLE:
                while True:
                    data = stream.recv(_CHUNK)
                    if data == -2:  # drained
                        break
                    if not data:
                        self._end("the machine closed its console")
                        return
                    self._on_data(bytes(data))
            if events & libvirt.VIR_STREAM_EVENT_WRITABLE:
                with self._lock:
                    if not self._ended:
                        self._flush()
            if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
                self._end("the console stream ended (the machine stopped, or another session took it over)")
        except libvirt.libvirtError as error:
            logger.info("serial console stream failed: %s", error)
            self._end("the console stream failed")

    def _end(self, reason: str, *, notify: bool = True) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
        for step in (self._stream.eventRemoveCallback, self._stream.abort):
            try:
                step()
            except libvirt.libvirtError:
                logger.debug("closing a serial console stream failed", exc_info=True)
        if notify:
            self._on_end(reason)


def open_serial(uri: str, uuid: str, *, run_id: int, on_data: Callable[[bytes], None],
                on_end: Callable[[str], None]) -> SerialConsole:
    """The first serial console of a running domain, if it is still the run a ticket was issued for.

    Opened with VIR_DOMAIN_CONSOLE_FORCE, as `virsh console --force`: a serial line has one reader, so a
    new session takes it over from an older one (which ends, saying so) instead of being refused.
    """
    with connection(uri) as conn:
        dom = conn.lookupByUUIDString(uuid)
        if not dom.isActive() or dom.ID() != run_id:
            raise ConsoleUnavailable(_("The machine stopped or restarted since the console was asked for."))
        stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
        dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        return SerialConsole(stream, on_data=on_data, on_end=on_end)
