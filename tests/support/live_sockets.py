"""A signed-in user's live socket through the ASGI application, as its page opens it (same origin, session)."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.models import User


async def signed_in_socket(user: User, path: str, application: Any = None, *,
                           timeout: float = 5) -> WebsocketCommunicator:
    """`path` (/ws/...) opened by `user`'s page on http://localhost, connected (`application`: the project's
    router by default)."""
    if application is None:
        from vmportal.asgi import router as application
    client = Client()
    await database_sync_to_async(client.force_login)(user)
    communicator = WebsocketCommunicator(application, path, headers=[
        (b"origin", b"http://localhost"), (b"host", b"localhost"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())])
    assert (await communicator.connect(timeout=timeout))[0], f"{path} refused {user.username}"
    return communicator
