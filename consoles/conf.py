"""Console settings: a project setting of the same name wins, else the environment, else the default.

VMPORTAL_CONSOLE_URL            where browsers reach the console proxy: a path on the page's own origin
                                (behind the reverse proxy, the default `/websockify`), `:PORT/PATH` for
                                the page's host on another port (bin/run without nginx), or a full
                                ws:// or wss:// URL
VMPORTAL_CONSOLE_PROXY_BIND     where `manage.py consoleproxy` listens (default 127.0.0.1:6080)
VMPORTAL_CONSOLE_TICKET_SECONDS how long a ticket may wait to be opened (default 30, at most 59)
VMPORTAL_CONSOLE_RECHECK_SECONDS how often an open console re-checks its user's session and right
                                (default 2)
VMPORTAL_CONSOLE_TRUSTED_PROXIES peers whose X-Forwarded-For names the client (default loopback)
"""

from __future__ import annotations

import os

from django.conf import settings


def _setting(name: str, default: str) -> str:
    return str(getattr(settings, name.removeprefix("VMPORTAL_"), os.environ.get(name, default)))


def websocket_url() -> str:
    return _setting("VMPORTAL_CONSOLE_URL", "/websockify")


def proxy_bind() -> tuple[str, int]:
    host, _, port = _setting("VMPORTAL_CONSOLE_PROXY_BIND", "127.0.0.1:6080").rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def ticket_seconds() -> int:
    # SECURITY.md: under 60 seconds to open, whatever the environment says.
    return max(1, min(59, int(_setting("VMPORTAL_CONSOLE_TICKET_SECONDS", "30"))))


def recheck_seconds() -> float:
    return max(0.2, float(_setting("VMPORTAL_CONSOLE_RECHECK_SECONDS", "2")))


def trusted_proxies() -> frozenset[str]:
    value = _setting("VMPORTAL_CONSOLE_TRUSTED_PROXIES", "127.0.0.1,::1")
    return frozenset(item.strip() for item in value.split(",") if item.strip())
