"""Which language a page or a live socket speaks: the user's own choice, else the language cookie, else the
browser's Accept-Language (Django's LocaleMiddleware), else English."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.cookie import parse_cookie
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

if TYPE_CHECKING:
    from accounts.models import User

SUPPORTED = frozenset(code for code, _name in settings.LANGUAGES)


class UserLanguageMiddleware:
    """After AuthenticationMiddleware: a signed-in user's own language wins over the browser's."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        chosen = _users_choice(getattr(request, "user", None))
        if chosen:
            translation.activate(chosen)
            request.LANGUAGE_CODE = chosen
        return self.get_response(request)


def _users_choice(user: User | Any) -> str:
    language = getattr(user, "language", "") if getattr(user, "is_authenticated", False) else ""
    return language if language in SUPPORTED else ""


def socket_language(scope: dict[str, Any]) -> str:
    """The language a websocket's pages are rendered in, decided as a page request's is."""
    chosen = _users_choice(scope.get("user"))
    if chosen:
        return chosen
    headers = {name.decode("latin1").lower(): value.decode("latin1") for name, value in scope.get("headers", ())}
    request = HttpRequest()
    request.COOKIES = parse_cookie(headers.get("cookie", ""))
    request.META["HTTP_ACCEPT_LANGUAGE"] = headers.get("accept-language", "")
    return translation.get_language_from_request(request)


@require_POST
def language_set(request: HttpRequest) -> HttpResponse:
    """The language chooser: a signed-in user's choice is kept on the account (every browser follows it), and in
    the language cookie for the pages before sign-in. An empty choice goes back to the browser's language."""
    language = request.POST.get("language", "")
    if language not in SUPPORTED:
        language = ""
    if request.user.is_authenticated:
        request.user.language = language
        request.user.save(update_fields=["language"])
    target = request.POST.get("next") or request.headers.get("referer", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = "/"
    response = HttpResponseRedirect(target)
    if language:
        response.set_cookie(settings.LANGUAGE_COOKIE_NAME, language, max_age=365 * 24 * 3600, samesite="Lax",
                            secure=settings.SESSION_COOKIE_SECURE, httponly=True)
    else:
        response.delete_cookie(settings.LANGUAGE_COOKIE_NAME, samesite="Lax")
    return response
