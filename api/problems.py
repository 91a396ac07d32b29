"""Errors as RFC 9457 problem details (application/problem+json), in the words the pages use.

The services raise Django's Http404, PermissionDenied and ValidationError with words meant for the user,
and libvirt's failures arrive as VirtErrors whose message each reader may read (domains.errors); the API
answers each with the status the pages give it (vmportal.errors) and the same words.
"""

from __future__ import annotations

from enum import Enum
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from domains import virt
from domains.errors import error_message
from vmportal.errors import NOT_FOUND, virt_error_status

Choice = TypeVar("Choice", bound=Enum)

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise
    from rest_framework.request import Request

CONTENT_TYPE = "application/problem+json"
# Where the API's status differs from a page's error page (vmportal.errors): what the VM lacks for this (no
# agent, no display) is its state, as the console page's 409 says; a definition libvirt refuses is the input's
# fault, as the forms show it.
_STATUSES: tuple[tuple[type[virt.VirtError], int], ...] = (
    (virt.AgentUnavailable, 409), (virt.ConsoleUnavailable, 409), (virt.InvalidDefinition, 400))


# HTTP's own phrases for the statuses the API answers with, in the caller's language (RFC 9457 lets a title
# change only with the language); any other status keeps the English phrase.
_TITLES = {
    400: _("Bad Request"), 401: _("Unauthorized"), 403: _("Forbidden"), 404: _("Not Found"),
    405: _("Method Not Allowed"),
    409: _("Conflict"), 410: _("Gone"), 413: _("Request Entity Too Large"), 429: _("Too Many Requests"),
    500: _("Internal Server Error"), 502: _("Bad Gateway"), 503: _("Service Unavailable"),
}


def problem(status: int, detail: str, *, errors: dict[str, list[str]] | None = None,
            headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": str(_TITLES.get(status, HTTPStatus(status).phrase)),
                            "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    return Response(body, status=status, headers=headers, content_type=CONTENT_TYPE)


def validation_problem(error: ValidationError | dict[str, list[str]]) -> Response:
    """A form's or a service's refusal: every message in `detail`, and those of a field under its name."""
    by_field = error.message_dict if isinstance(error, ValidationError) and hasattr(error, "error_dict") else (
        error if isinstance(error, dict) else {})
    messages = error.messages if isinstance(error, ValidationError) else [m for ms in error.values() for m in ms]
    fields = {name: list(texts) for name, texts in by_field.items() if name != "__all__"}
    return problem(400, " ".join(messages), errors=fields or None)


def handle(error: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's EXCEPTION_HANDLER: every failure of an API view becomes a problem document."""
    request: Request = context["request"]
    if isinstance(error, Http404 | exceptions.NotFound):
        # Whatever the gate said, one wording: a VM the caller may not see reads like one that does not exist.
        return problem(404, str(NOT_FOUND))
    if isinstance(error, PermissionDenied):
        return problem(403, str(error) or str(_("You may not do that.")))
    if isinstance(error, ValidationError):
        return validation_problem(error)
    if isinstance(error, virt.VirtError):
        code = next((code for kind, code in _STATUSES if isinstance(error, kind)), virt_error_status(error))
        return problem(code, error_message(user=request.user, error=error))
    response = exception_handler(error, context)
    if response is None or not isinstance(error, exceptions.APIException):
        return response
    headers = {name: value for name, value in response.items() if name in ("Retry-After", "WWW-Authenticate")}
    if isinstance(error.detail, dict):
        fields = {name: [str(text) for text in (texts if isinstance(texts, list) else [texts])]
                  for name, texts in error.detail.items()}
        return validation_problem(fields)
    detail = " ".join(str(text) for text in error.detail) if isinstance(error.detail, list) else str(error.detail)
    return problem(response.status_code, detail, headers=headers)


def one_of(kind: type[Choice], value: str, unknown: StrOrPromise) -> Choice:
    """`value` read as one of an enumeration's (an action named in the path, say); anything else is a 400
    saying `unknown` ("Unknown pool action.")."""
    try:
        return kind(value)
    except ValueError:
        raise exceptions.ParseError(unknown) from None
