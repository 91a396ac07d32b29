"""Tokens: made (shown once), found for a request, revoked. Only their hashes are kept."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from audit.services import audited

from .models import ApiToken

if TYPE_CHECKING:
    from accounts.models import User

SCHEME = "vmp"  # tokens read vmp_<prefix>_<secret>: a secret scanner, or a person, can tell what one is
SECRET_BYTES = 32
LAST_USED_RESOLUTION = timedelta(minutes=1)  # a token in steady use is not a database write per request


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_create(*, actor: User, name: str, expires_days: int | None = None, read_only: bool = False,
                 client_addr: str | None = None) -> tuple[ApiToken, str]:
    """A new token of `actor`'s own; returns it with the token text, which is never readable again."""
    with audited(actor=actor, action="token.create", client_addr=client_addr) as entry:
        name = name.strip()
        if not name:
            raise ValidationError({"name": _("Give the token a name, to tell it apart in the audit log.")})
        if actor.api_tokens.filter(name=name).exists():
            raise ValidationError({"name": ValidationError(_("You already have a token named %(name)s."),
                                                          params={"name": name})})
        if expires_days is not None and expires_days < 1:
            raise ValidationError({"expires_days": _("A token expires after one day at the soonest.")})
        prefix = secrets.token_hex(4)
        text = f"{SCHEME}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
        token = ApiToken.objects.create(
            user=actor, name=name, prefix=prefix, secret_hash=_hash(text), read_only=read_only,
            expires_at=timezone.now() + timedelta(days=expires_days) if expires_days else None)
        entry.message = f"{name} ({prefix}…)" + (", read-only" if read_only else "") + (
            f", expires in {expires_days} days" if expires_days else "")
    return token, text


def token_revoke(*, actor: User, token_id: int, client_addr: str | None = None) -> ApiToken:
    """Revokes one of `actor`'s own tokens; anybody else's is a 404."""
    with audited(actor=actor, action="token.revoke", client_addr=client_addr) as entry:
        token = actor.api_tokens.filter(pk=token_id, revoked_at__isnull=True).first()
        if token is None:
            raise Http404("No such token.")
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        entry.message = f"{token.name} ({token.prefix}…)"
    return token


def token_authenticate(text: str) -> ApiToken | None:
    """The usable token whose text this is, its use noted; None for anything else (unknown, revoked, expired)."""
    scheme, _, rest = text.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != SCHEME or not secret:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.secret_hash, _hash(text)) or not token.usable:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def bearer_text(authorization: str | None) -> str | None:
    """What an `Authorization: Bearer <token>` header sends; None for any other scheme (or none)."""
    scheme, _, text = (authorization or "").partition(" ")
    return text.strip() if scheme.lower() == "bearer" else None


def token_from_header(authorization: str | None) -> ApiToken | None:
    """The usable token an `Authorization: Bearer <token>` header sends (a websocket's, say); None otherwise."""
    text = bearer_text(authorization)
    return token_authenticate(text) if text is not None else None


def token_user(token_id: int) -> User | None:
    """The active user of this token while it is usable (not revoked, not expired); None otherwise."""
    token = ApiToken.objects.select_related("user").filter(pk=token_id).first()
    return token.user if token is not None and token.usable and token.user.is_active else None
