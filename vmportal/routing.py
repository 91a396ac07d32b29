from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import URLPattern, URLResolver, path, re_path

from consoles.consumers import SerialConsoleConsumer
from domains.consumers import DomainListConsumer, DomainPageConsumer

NOT_FOUND = 4404  # the close code of a websocket to a path nothing serves


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Any other path: the handshake is refused with a close code (Channels' URLRouter would raise, a 500)."""

    async def connect(self) -> None:
        await self.close(code=NOT_FOUND)


# Live-state and console websockets are added by their own apps as they arrive.
websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/domains/", DomainListConsumer.as_asgi()),
    path("ws/domains/<slug:host_name>/<uuid:uuid>/", DomainPageConsumer.as_asgi()),
    path("ws/consoles/serial/", SerialConsoleConsumer.as_asgi()),
    re_path(r"", NotFoundConsumer.as_asgi()),  # last: whatever the others did not match
]
