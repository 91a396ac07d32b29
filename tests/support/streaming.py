"""Reading a streamed response as daphne does: its content is an async iterator (storage.views' downloads)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from asgiref.sync import async_to_sync


def read_all(content: AsyncIterator[bytes]) -> bytes:
    async def collect() -> bytes:
        return b"".join([chunk async for chunk in content])

    return async_to_sync(collect)()
