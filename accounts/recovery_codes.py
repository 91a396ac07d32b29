"""Recovery codes for a lost authenticator: django-otp's static device, each code good for one sign-in.

otp_static keeps its tokens as given; we give it a hash of each code, so the database never holds one that works.
SHA-256 without salt is enough, as for API tokens: a code is 80 random bits, not something a person chose.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from base64 import b32encode

from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken

from .models import User

COUNT = 10
_SEPARATORS = re.compile(r"[\s-]")


def _new_code() -> str:
    """16 base32 letters and digits, shown as four groups of four (abcd-efgh-…) to copy by hand."""
    text = b32encode(secrets.token_bytes(10)).decode().lower()
    return "-".join(text[start:start + 4] for start in range(0, len(text), 4))


def _digest(code: str) -> str:
    # otp_static's token column holds 16 characters: 80 bits of the hash, as many as the code has.
    normalised = _SEPARATORS.sub("", code).lower()
    return b32encode(hashlib.sha256(normalised.encode()).digest()).decode()[:16]


def is_recovery_code(code: str) -> bool:
    """Authenticator codes are digits only; a recovery code never is (it has letters and dashes)."""
    return not code.isdigit()


def replace(user: User) -> list[str]:
    """COUNT new codes for `user` in place of any before; the only time their text exists outside the user's hands."""
    codes = [_new_code() for _ in range(COUNT)]
    with transaction.atomic():
        # The same device, new tokens: a session that signed in with an old code stays verified by its device.
        device, _ = StaticDevice.objects.get_or_create(user=user, defaults={"name": "recovery codes"})
        device.token_set.all().delete()
        StaticToken.objects.bulk_create(StaticToken(device=device, token=_digest(code)) for code in codes)
    return codes


def use(user: User, code: str) -> StaticDevice | None:
    """The user's recovery-code device when `code` is one of their unused codes, which this uses up; else None.

    Not otp_static's verify_token: it reads the code then deletes it, so two requests could both sign in with it.
    Deleting first and counting what went makes one of them the only winner.
    """
    device = StaticDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        return None
    used, _ = StaticToken.objects.filter(device=device, token=_digest(code)).delete()
    return device if used else None


def remaining(user: User) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()
