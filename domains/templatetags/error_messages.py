"""`{{ entry.message|shown_to:user }}`: an audit row's message as this reader may read it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import template

from domains.errors import error_message

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User

register = template.Library()


@register.filter
def shown_to(message: str, user: User | AnonymousUser) -> str:
    return error_message(user=user, error=message)
