"""Counting failed logins per username and per client address, in the shared cache."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache


def _keys(username: str, client_addr: str) -> list[str]:
    return [f"login-failures:user:{username.lower()}", f"login-failures:addr:{client_addr}"]


def login_blocked(*, username: str, client_addr: str) -> bool:
    counts = cache.get_many(_keys(username, client_addr))
    return any(count >= settings.LOGIN_FAILURE_LIMIT for count in counts.values())


def login_failed(*, username: str, client_addr: str) -> None:
    for key in _keys(username, client_addr):
        # add() starts the window; incr() keeps the window the first failure opened.
        if not cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS):
            try:
                cache.incr(key)
            except ValueError:
                cache.set(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def login_succeeded(*, username: str) -> None:
    cache.delete(_keys(username, "")[0])
