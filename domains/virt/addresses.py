"""Guest addresses as the agent last reported them, so the list can show them without asking."""

from __future__ import annotations

_known: dict[tuple[str, str], tuple[str, ...]] = {}


def remember_addresses(uri: str, uuid: str, addresses: tuple[str, ...]) -> None:
    _known[(uri, uuid.lower())] = addresses


def known_addresses(uri: str, uuid: str) -> tuple[str, ...]:
    return _known.get((uri, uuid.lower()), ())
