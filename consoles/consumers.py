"""The serial console's websocket: the browser's terminal (xterm.js) relayed to libvirt's console stream.

Served by daphne at /ws/consoles/serial/?ticket=…, not by the websockify proxy: the stream is a libvirt
call (domains.virt.open_serial), not a socket to connect to, and daphne already runs libvirt's event loop
(vmportal.lifespan) and refuses other origins (vmportal.origins.SameOriginWebsockets). The ticket is then
checked and consumed as the proxy does (consoles.services: the page's origin, the ticket user's session,
the console right, one conditional UPDATE, the VM's run), re-checked every CONSOLE_RECHECK_SECONDS, and
opening and closing are audited. A refusal refuses the handshake (403).

Frames are binary both ways: the serial line's bytes. Close codes: 4001 the portal ended the console
(logout, revoked right: its reason is the close reason), 1011 the stream failed or re-checks kept failing,
1000 the machine closed its console (it stopped, or another session took the line over).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from domains import virt
from vmportal import clients

from . import conf, services
from .proxy import CLOSE_ENDED
from .services import OpenConsole, TicketRefused

logger = logging.getLogger(__name__)

RECHECK_FAILURES = 3


class SerialConsoleConsumer(AsyncWebsocketConsumer):
    console: OpenConsole[virt.SerialEndpoint] | None = None
    serial: virt.SerialConsole | None = None
    ended_by = ""  # why the portal or the machine ended it, for the close audit

    async def connect(self) -> None:
        headers = {name.decode("latin1").lower(): value.decode("latin1") for name, value in self.scope["headers"]}
        peer = self.scope.get("client")
        client_addr = clients.client_address(peer=str(peer[0]) if peer else None,
                                             forwarded_for=headers.get("x-forwarded-for"))
        token = parse_qs(self.scope.get("query_string", b"").decode("latin1")).get("ticket", [""])[-1]
        try:
            pending = await database_sync_to_async(services.serial_ticket_check)(token=token, client_addr=client_addr)
            self.console = await database_sync_to_async(services.console_open)(
                pending=pending, origin=headers.get("origin"), cookie_header=headers.get("cookie"),
                authorization=headers.get("authorization"), client_addr=client_addr)
        except TicketRefused:
            await self.close()  # before accept(): the handshake is refused
            return
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        ticket = self.console.ticket
        try:
            self.serial = await asyncio.to_thread(
                virt.open_serial, ticket.host.uri, str(ticket.domain_uuid), run_id=self.console.endpoint.run_id,
                on_data=self._from_machine, on_end=self._machine_ending)
        except virt.VirtError as error:
            await self._close_audited(f"serial console unavailable: {error.full_message}")
            await self.close()
            return
        await self.accept()
        self.tasks = [asyncio.create_task(self._relay()), asyncio.create_task(self._recheck_forever(self.console))]

    # Called in libvirt's event loop thread: hand over to this socket's loop.
    def _from_machine(self, data: bytes) -> None:
        self.loop.call_soon_threadsafe(self.outbox.put_nowait, data)

    def _machine_ending(self, reason: str) -> None:
        self.loop.call_soon_threadsafe(self._machine_ended, reason)

    def _machine_ended(self, reason: str) -> None:
        self.ended_by = self.ended_by or reason
        self.outbox.put_nowait(None)

    async def _relay(self) -> None:
        while (data := await self.outbox.get()) is not None:
            await self.send(bytes_data=data)
        await self._end(1000)

    async def _recheck_forever(self, console: OpenConsole[virt.SerialEndpoint]) -> None:
        """Logout, a password change or a revoked right ends the console within the re-check interval."""
        failures = 0
        while True:
            await asyncio.sleep(conf.recheck_seconds())
            try:
                reason = await database_sync_to_async(services.console_recheck)(console)
                failures = 0
            except Exception:
                failures += 1
                logger.warning("re-checking a serial console failed (%d in a row)", failures, exc_info=True)
                if failures >= RECHECK_FAILURES:
                    self.ended_by = services.RECHECK_FAILED
                    await self._end(1011)
                    return
                continue
            if reason:
                self.ended_by = reason
                await self._end(CLOSE_ENDED, services.ended_close_reason(reason))
                return

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        data = bytes_data if bytes_data is not None else (text_data or "").encode()
        if self.serial is not None and data:
            await asyncio.to_thread(self.serial.write, data)

    async def disconnect(self, code: int) -> None:
        for task in getattr(self, "tasks", ()):
            if task is not asyncio.current_task():
                task.cancel()
        await self._release()

    async def _end(self, code: int, reason: str | None = None) -> None:
        """The portal or the machine ends the console: the line is let go and the close audited at once."""
        await self._release()
        await self.close(code=code, reason=reason)

    async def _release(self) -> None:
        if self.serial is not None:
            serial, self.serial = self.serial, None
            await asyncio.to_thread(serial.close)
            await self._close_audited(self.ended_by or "closed by the browser")

    async def _close_audited(self, reason: str) -> None:
        if self.console is not None:
            console, self.console = self.console, None
            await database_sync_to_async(services.console_close)(console, reason=reason)
