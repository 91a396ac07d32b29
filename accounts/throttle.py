"""Counting failed logins in the shared cache: per (username, client address), and per client address.

Never per username alone: then five wrong passwords from anywhere would lock the account (admin
included) out for everyone, again every window. A pair locks out only that address's guesses at that
account; the address count, with a higher limit, stops one address trying many usernames. Each count
lives with the time its window opened (the first failure), so a refusal can say how long to wait.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import ngettext


@dataclass(frozen=True)
class Window:
    """One counter: its cache key prefix and how many failures it allows."""

    key: str
    limit: int

    @property
    def count_key(self) -> str:
        return f"{self.key}:count"

    @property
    def opened_key(self) -> str:
        return f"{self.key}:opened"


def _windows(username: str, client_addr: str) -> list[Window]:
    # Hashed: a username may hold anything (spaces, any length) and cache keys may not.
    user = hashlib.sha256(username.lower().encode()).hexdigest()[:32]
    return [Window(f"login-failures:pair:{user}:{client_addr}", settings.LOGIN_FAILURE_LIMIT),
            Window(f"login-failures:addr:{client_addr}", settings.LOGIN_FAILURE_ADDRESS_LIMIT)]


def login_blocked_for(*, username: str, client_addr: str) -> int:
    """Seconds until this username may be tried again from this address; 0 if it may now."""
    windows = _windows(username, client_addr)
    stored = cache.get_many([key for window in windows for key in (window.count_key, window.opened_key)])
    window_seconds = settings.LOGIN_FAILURE_WINDOW_SECONDS
    wait = 0
    for window in windows:
        if stored.get(window.count_key, 0) >= window.limit:
            opened = stored.get(window.opened_key, time.time())
            wait = max(wait, math.ceil(opened + window_seconds - time.time()), 1)
    return wait


def login_failed(*, username: str, client_addr: str) -> None:
    window_seconds = settings.LOGIN_FAILURE_WINDOW_SECONDS
    now = time.time()
    for window in _windows(username, client_addr):
        # add() opens the window and keeps its start; incr() counts atomically (Redis INCR) without
        # moving the window's end, so failures cannot keep a lock alive past the first one's window.
        cache.add(window.opened_key, now, timeout=window_seconds)
        cache.add(window.count_key, 0, timeout=window_seconds)
        try:
            cache.incr(window.count_key)
        except ValueError:  # the window closed between add() and incr(): this failure opens a new one
            cache.set_many({window.opened_key: now, window.count_key: 1}, timeout=window_seconds)


def login_succeeded(*, username: str, client_addr: str) -> None:
    """The right password from this address clears the pair's count; the address's count stays."""
    pair = _windows(username, client_addr)[0]
    cache.delete_many([pair.count_key, pair.opened_key])


def wait_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return ngettext("Try again in %(minutes)d minute.", "Try again in %(minutes)d minutes.", minutes) % {
        "minutes": minutes}
