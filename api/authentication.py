"""`Authorization: Bearer <token>`, read-only tokens, and the rate limit per token."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework import authentication, exceptions, permissions, throttling

from vmportal.clients import request_client_address

from . import services
from .models import ApiToken

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

    from accounts.models import User


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """A request with a bearer token is that token's user; an unknown, revoked or expired token is a 401
    (never a fall back to the session), and an inactive user's token is refused like a revoked one."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        text = services.bearer_text(authentication.get_authorization_header(request).decode("latin-1"))
        if text is None:
            return None
        token = services.token_authenticate(text)
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("This token is unknown, revoked or expired.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class ReadOnlyTokenRefusesWrites(permissions.BasePermission):
    """A read-only token may only read (GET, HEAD, OPTIONS), whatever its user may do."""

    message = "This token is read-only."

    def has_permission(self, request: Request, view: APIView) -> bool:
        token = request.auth
        return not (isinstance(token, ApiToken) and token.read_only) or request.method in permissions.SAFE_METHODS


class TokenRateThrottle(throttling.SimpleRateThrottle):
    """settings.API_RATE requests per token (or per signed-in session's user) and period, as DRF's rates read:
    "600/minute". One busy token never slows another, nor the user's own pages."""

    scope = "api"

    def get_rate(self) -> str | None:
        return settings.API_RATE or None

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        if isinstance(request.auth, ApiToken):
            ident = f"token-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:  # the address as the audit log reads it: X-Forwarded-For only from a trusted proxy
            ident = f"address-{request_client_address(request._request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request: Request, view: Any) -> bool:
        # The rate is read per request, so a changed setting (or a test's) takes effect at once.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)
