"""Template context every page gets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import live

if TYPE_CHECKING:
    from django.http import HttpRequest


def live_since(request: HttpRequest) -> dict[str, int]:
    """Live pages pass this to their socket, which is told what changed after it (domains.consumers)."""
    return {"live_since": live.rendered_at()}
