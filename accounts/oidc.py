"""OpenID Connect single sign-on (mozilla-django-oidc): the authorization code flow with PKCE.

Endpoints not set in the environment come from the issuer's discovery document, fetched once per process when
first needed (never at start-up, and never for a password sign-in). The user is found by (issuer, subject),
created at their first sign-in, and their role and Django groups follow the groups claim when a mapping is set.
Signing out of the portal signs a user who came through the provider out there too (RP-initiated logout).
"""

from __future__ import annotations

import functools
import logging
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.contrib import auth, messages
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, resolve_url
from django.utils.translation import gettext as _
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from . import second_factor
from .models import OidcIdentity, User
from .roles import mirror_groups, role_for_groups

logger = logging.getLogger(__name__)

# mozilla-django-oidc's endpoint settings, and the discovery document's field for each.
_DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


@functools.cache
def _discovery(issuer: str) -> dict[str, Any]:
    response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=settings.OIDC_TIMEOUT)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    if document.get("issuer", "").rstrip("/") != issuer:
        raise SuspiciousOperation(f"the discovery document of {issuer} names another issuer")
    return document


def oidc_setting(name: str, *default: Any) -> Any:
    """A mozilla-django-oidc setting; an endpoint not configured is the issuer's discovered one."""
    if name in _DISCOVERED and not getattr(settings, name, ""):
        return _discovery(settings.OIDC_ISSUER)[_DISCOVERED[name]]
    return import_from_settings(name, *default)


class OpenIDConnectBackend(OIDCAuthenticationBackend):
    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Not the parent's: it reads every endpoint here, which would fetch discovery on each password sign-in.
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.UserModel = User

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:  # noqa: N802 (the parent's attribute names)
        return str(oidc_setting("OIDC_OP_TOKEN_ENDPOINT"))

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str:  # noqa: N802
        return str(oidc_setting("OIDC_OP_USER_ENDPOINT"))

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str:  # noqa: N802
        return str(oidc_setting("OIDC_OP_JWKS_ENDPOINT"))

    def get_payload_data(self, token: str | bytes, key: Any) -> dict[str, Any]:
        """The ID token's claims, checked to be from our issuer and for us (the parent checks neither)."""
        payload: dict[str, Any] = super().get_payload_data(token, key)
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if str(payload.get("iss", "")).rstrip("/") != settings.OIDC_ISSUER or self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("the ID token is from another issuer or for another client")
        return payload

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> User:
        claims = self.get_userinfo(access_token, id_token, payload)
        if claims.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("the userinfo answer is about another subject than the ID token")
        claims = {**payload, **claims}
        with transaction.atomic():
            identity = (OidcIdentity.objects.select_related("user")
                        .filter(issuer=settings.OIDC_ISSUER, subject=payload["sub"]).first())
            user = identity.user if identity else self._create_user(claims)
            self._apply_groups(user, claims)
        return user

    def _create_user(self, claims: dict[str, Any]) -> User:
        username = str(claims.get("preferred_username") or claims.get("email") or claims["sub"])[:150]
        if User.objects.filter(username=username).exists():
            raise SuspiciousOperation(f"an account named {username} exists here already and is not linked to "
                                      "this provider")
        user = User.objects.create_user(username=username, email=str(claims.get("email") or ""))
        OidcIdentity.objects.create(user=user, issuer=settings.OIDC_ISSUER, subject=claims["sub"])
        return user

    def _apply_groups(self, user: User, claims: dict[str, Any]) -> None:
        """With a mapping set, the groups claim decides the role and the Django groups at every sign-in."""
        if not settings.OIDC_ROLE_GROUPS or settings.OIDC_GROUPS_CLAIM not in claims:
            return
        groups = claims[settings.OIDC_GROUPS_CLAIM]
        groups = [groups] if isinstance(groups, str) else [str(group) for group in groups]
        user.role = role_for_groups(groups, settings.OIDC_ROLE_GROUPS)
        user.save()
        mirror_groups(user, groups)


class _StartView(OIDCAuthenticationRequestView):
    get_settings = staticmethod(oidc_setting)


class _CallbackView(OIDCAuthenticationCallbackView):
    get_settings = staticmethod(oidc_setting)

    def login_success(self) -> HttpResponse:
        return second_factor.complete_sign_in(self.request, self.user, next_url=self.success_url)

    def login_failure(self) -> HttpResponse:
        messages.error(self.request, _("Signing in with %(provider)s did not work; ask an admin if it keeps "
                                       "failing.") % {"provider": settings.OIDC_PROVIDER_NAME})
        return redirect("accounts:login")


def _when_configured(view: Any) -> Any:
    """The view while OpenID Connect is configured; a 404 otherwise."""
    @functools.wraps(view)
    def answer(request: HttpRequest) -> HttpResponse:
        if not settings.OIDC_ISSUER:
            raise Http404("Single sign-on is not configured.")
        response: HttpResponse = view(request)
        return response
    return answer


start = _when_configured(_StartView.as_view())
callback = _when_configured(_CallbackView.as_view())


def provider_logout_url(request: HttpRequest) -> str:
    """Where signing out sends the browser (mozilla-django-oidc's OIDC_OP_LOGOUT_URL_METHOD, asked before the
    session ends). A user who signed in at the provider goes to its end_session_endpoint, which ends their session
    there too and sends them back to our login page; so the next "Sign in with …" asks for their password again.
    Anyone else, or when the provider has no such endpoint or cannot be asked, goes to the login page directly."""
    login_page = resolve_url(settings.LOGOUT_REDIRECT_URL)
    id_token = request.session.get("oidc_id_token")  # kept there by mozilla-django-oidc (OIDC_STORE_ID_TOKEN)
    if request.session.get(auth.BACKEND_SESSION_KEY) != f"{__name__}.{OpenIDConnectBackend.__name__}" or not id_token:
        return login_page
    try:
        endpoint = (settings.OIDC_OP_END_SESSION_ENDPOINT
                    or _discovery(settings.OIDC_ISSUER).get("end_session_endpoint", ""))
    except (requests.RequestException, ValueError, SuspiciousOperation) as error:
        logger.warning("signed %s out here only: the provider's logout endpoint is unknown (%s)",
                       request.user, error)
        return login_page
    if not endpoint:
        return login_page
    query = urlencode({"id_token_hint": id_token, "client_id": settings.OIDC_RP_CLIENT_ID,
                       "post_logout_redirect_uri": request.build_absolute_uri(login_page)})
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
