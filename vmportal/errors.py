"""Error pages inside the site's layout: a libvirt error no view caught, and the 403/404/500 handlers.

Every page keeps the navigation and offers a way back, so a failure never strands a user on a bare
server page; an htmx request gets the message out of band instead of a page swapped into a fragment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.contrib import messages
from django.http import HttpResponse, HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from domains import virt
from domains.errors import error_message

if TYPE_CHECKING:
    from django.http import HttpRequest
    from django.utils.functional import _StrOrPromise as StrOrPromise

logger = logging.getLogger(__name__)

# HTTP status and page title per kind of hypervisor failure; anything else is the hypervisor's (502).
_KINDS: tuple[tuple[type[virt.VirtError], int, StrOrPromise], ...] = (
    (virt.HostUnreachable, 503, gettext_lazy("Host unreachable")),
    (virt.DomainNotFound, 404, gettext_lazy("Virtual machine not found")),
    (virt.SnapshotNotFound, 404, gettext_lazy("Snapshot not found")),
    (virt.OperationInvalid, 409, gettext_lazy("Not possible right now")),
    (virt.OperationInProgress, 409, gettext_lazy("Not possible right now")),
)


def _status_and_title(error: virt.VirtError) -> tuple[int, StrOrPromise]:
    return next(((status, title) for kind, status, title in _KINDS if isinstance(error, kind)),
                (502, gettext_lazy("The hypervisor could not do that")))


def virt_error_status(error: virt.VirtError) -> int:
    """The HTTP status a hypervisor failure is answered with, on a page or by the API."""
    return _status_and_title(error)[0]


class VirtErrorMiddleware:
    """Turns a VirtError escaping any view into a page that says why (the reader's message) with a way back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, virt.VirtError):
            return None
        logger.warning("%s %s: %s", request.method, request.path, exception.full_message)
        status, title = _status_and_title(exception)
        message = error_message(user=request.user, error=exception)
        host_name = request.resolver_match.kwargs.get("host_name") if request.resolver_match else None
        if host_name:
            message = _("Host %(host)s: %(message)s") % {"host": host_name, "message": message}
        if getattr(request, "htmx", False):
            # htmx swaps nothing on an error status: answer 200, swap nothing, show the message.
            messages.error(request, message)
            response = HttpResponse(render_to_string("base.html#messages", {"oob": True}, request))
            response["HX-Reswap"] = "none"
            return response
        return error_page(request, status=status, title=title, message=message)


def error_page(request: HttpRequest, *, status: int, title: StrOrPromise, message: StrOrPromise) -> HttpResponse:
    return render(request, "errors/error.html",
                  {"status": status, "title": title, "message": message, "back": _back(request)}, status=status)


def _back(request: HttpRequest) -> str:
    """Where the user came from, when that is a page of this site other than the one that failed."""
    referer = request.headers.get("referer", "")
    if not referer or referer == request.build_absolute_uri():
        return ""
    same_site = url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()},
                                                require_https=request.is_secure())
    return referer if same_site else ""


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # The project raises PermissionDenied with words meant for the user ("You may view this machine…").
    return error_page(request, status=403, title=_("Not allowed"),
                      message=str(exception or "") or _("You may not do that."))


NOT_FOUND = gettext_lazy("There is nothing here, or nothing you may see.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    # The same words for a page that does not exist and one this user may not see (SECURITY.md).
    if request.path.startswith("/api/"):  # a URL no API route matches: a problem document, as the API's own 404s
        return JsonResponse({"type": "about:blank", "title": "Not Found", "status": 404, "detail": str(NOT_FOUND)},
                            status=404, content_type="application/problem+json")
    return error_page(request, status=404, title=_("Not found"), message=NOT_FOUND)


def server_error(request: HttpRequest) -> HttpResponse:
    """The layout rendered without the request: whatever broke (the database?) would break its user menu too."""
    context = {"status": 500, "title": _("Something went wrong"),
               "message": _("The dashboard could not answer this request; it has been logged.")}
    try:
        return HttpResponseServerError(render_to_string("errors/error.html", context))
    except Exception:
        logger.exception("rendering the error page failed")
        return HttpResponseServerError(format_html('<h1>{}</h1><p><a href="/">{}</a></p>', _("Something went wrong"),
                                                   _("Back to the dashboard")))
