"""Which words about a failure a user reads: the one decision every page, panel and audit row uses.

Admins run the hosts, so they read libvirt's own message (paths, URIs and all); everybody else,
operators included, reads the same reason with those taken out. Operators act on every machine but
never see the host list or its URIs, so a path or socket name would tell them more than any page does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .access import is_admin
from .virt import VirtError
from .virt.errors import redact

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from accounts.models import User


def error_message(*, user: User | AnonymousUser, error: VirtError | str) -> str:
    """What `user` reads about `error`: a VirtError, or a message as an audit row keeps it (in full)."""
    sees_host_details = is_admin(user)
    if isinstance(error, VirtError):
        return error.full_message if sees_host_details else error.redacted_message
    return error if sees_host_details else redact(error)
