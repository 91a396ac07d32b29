"""Reads of API tokens: a user sees its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import QuerySet

from .models import ApiToken

if TYPE_CHECKING:
    from accounts.models import User


def token_list(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)
