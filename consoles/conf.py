"""Console settings, read from vmportal/settings.py (where each is documented and taken from the environment)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings


def websocket_url() -> str:
    return str(settings.CONSOLE_URL)


def proxy_bind() -> tuple[str, int]:
    host, _, port = str(settings.CONSOLE_PROXY_BIND).rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def ticket_seconds() -> int:
    # SECURITY.md: under 60 seconds to open, whatever the configuration says.
    return max(1, min(59, int(settings.CONSOLE_TICKET_SECONDS)))


def recheck_seconds() -> float:
    return float(settings.CONSOLE_RECHECK_SECONDS)


def tickets_per_minute() -> int:
    """Console connections (ticket requests) one user may make per minute; 0: no limit."""
    return max(0, int(settings.CONSOLE_TICKETS_PER_MINUTE))


def open_limit() -> int:
    """Consoles one user may have open at once, across every proxy process; 0: no limit."""
    return max(0, int(settings.CONSOLE_OPEN_LIMIT))


def ssh_control_dir() -> Path:
    return Path(settings.SSH_CONTROL_DIR)


def ssh_control_persist_seconds() -> int:
    return int(settings.SSH_CONTROL_PERSIST_SECONDS)
