"""The console page (a browser tab per VM) and the tickets it asks for before each connection."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from domains import virt
from domains.errors import error_message
from domains.views import client_addr
from vmportal.origins import request_origin

from . import selectors, services

if TYPE_CHECKING:
    from domains.views import AuthedRequest


def _private(response: HttpResponse) -> HttpResponse:
    # The console's URLs must not leak to anything the page loads or links to (SECURITY.md rule 8).
    response["Referrer-Policy"] = "no-referrer"
    return response


@login_required
@require_GET
@never_cache
def console_page(request: AuthedRequest, host_name: str, uuid: UUID, serial: bool = False) -> HttpResponse:
    """The graphics console's tab, or with `serial` (its own URL) the serial console's terminal."""
    template = "consoles/serial.html" if serial else "consoles/console.html"
    try:
        page = selectors.console_page(user=request.user, host_name=host_name, uuid=str(uuid), serial=serial)
    except virt.VirtError as error:  # the host is unreachable: say so, as the VM page does
        return _private(render(request, template,
                               {"error": error_message(user=request.user, error=error), "host_name": host_name},
                               status=503))
    config = {
        "kind": page.kind,
        "ticketUrl": reverse("consoles:serial-tickets" if serial else "consoles:tickets", args=[host_name, uuid]),
        "name": page.row.record.name,
        "ended": {services.ended_close_reason(reason): str(text) for reason, text in services.ENDED_EXPLAINED.items()},
    }
    return _private(render(request, template, {"page": page, "row": page.row, "config": config},
                           status=200 if page.kind else 409))


@login_required
@require_POST
@never_cache
def console_tickets(request: AuthedRequest, host_name: str, uuid: UUID, serial: bool = False) -> HttpResponse:
    """Single-use tickets for one connection (JSON), bound to this page's origin; a VM the user may not open
    is a 404, a per-user limit a 429 saying which."""
    try:
        issued = services.console_tickets_issue(actor=request.user, host_name=host_name, uuid=str(uuid),
                                                origin=request_origin(request) or "", client_addr=client_addr(request),
                                                serial=serial)
    except services.ConsoleLimitReached as limited:
        response = JsonResponse({"error": str(limited)}, status=429)
        if limited.retry_after:
            response["Retry-After"] = str(limited.retry_after)
        return _private(response)
    except virt.VirtError as error:
        return _private(JsonResponse({"error": error_message(user=request.user, error=error)}, status=409))
    return _private(JsonResponse({
        "kind": issued.kind,
        "url": issued.websocket_url,
        "tickets": list(issued.tokens),
        "expiresIn": issued.expires_in,
    }))
