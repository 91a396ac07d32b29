"""The one writer of audit rows: domains, consoles and migration jobs all write through these functions.

An action's row is written before it acts and completed after it (Nova's instance actions): `audited`.
What is over when it is written (a refusal, a migration job that concluded) is one finished row: `record`,
`refuse`, `count_refusal`. Whatever a caller hands `audited` or `record` as a secret is masked here, by
the same `mask` that log lines use, so a ticket or a key never reaches the log through one caller's oversight.

The log is in one language, the site's (settings.LANGUAGE_CODE), whatever the actor reads: it is a record
that admins read together and search. So callers hand their messages in still lazy (gettext_lazy,
format_lazy, a VirtError or ValidationError built from them) and this module turns every one into text
under that language (`_in_log_language`), while the actor is shown the same message in their own.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import timedelta
from typing import TYPE_CHECKING, NoReturn
from uuid import UUID

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.utils import timezone, translation

from domains.virt import VirtError

from .models import AuditEntry

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from accounts.models import User
    from domains.models import Host

Result = AuditEntry.Result

# The name of the API token the current request acts through ("" for a session): set by the API for the
# request (api.views.ApiView), so every row any service writes for it names the token without each service
# being told.
API_TOKEN_NAME: ContextVar[str] = ContextVar("api_token_name", default="")


def mask(secret: str) -> str:
    """What a log line or an audit row may show of a secret: enough to tell two apart, nothing to reuse."""
    return f"{secret[:4]}…" if secret else "(none)"


def _in_log_language(text: StrOrPromise) -> str:
    """A message as the log keeps it: a lazy translation turned into text in the site's language."""
    with translation.override(settings.LANGUAGE_CODE):
        return str(text)


def _masked(text: StrOrPromise, secrets: Collection[str]) -> str:
    text = _in_log_language(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, mask(secret))
    return text


def _create(*, actor: User | None, action: str, host: Host | None, domain_uuid: str | UUID | None,
            domain_name: str, client_addr: str | None, message: StrOrPromise, secrets: Collection[str],
            actor_name: str = "", host_name: str = "", result: Result = Result.PENDING) -> AuditEntry:
    return AuditEntry.objects.create(
        actor=actor,
        actor_name=actor_name or (actor.get_username() if actor else ""),
        action=action,
        host=host,
        host_name=host_name or (host.name if host else ""),
        domain_uuid=domain_uuid,
        domain_name=domain_name,
        client_addr=client_addr or None,
        token_name=API_TOKEN_NAME.get(),
        result=result,
        finished_at=None if result == Result.PENDING else timezone.now(),
        message=_masked(message, secrets),
    )


@contextmanager
def audited(
    *,
    actor: User,
    action: str,
    host: Host | None = None,
    domain_uuid: str | UUID | None = None,
    domain_name: str = "",
    client_addr: str | None = None,
    message: StrOrPromise = "",
    refusals: tuple[type[Exception], ...] = (),
    secrets: Collection[str] = (),
) -> Iterator[AuditEntry]:
    """Records `action`; a 404 from the permission gate, a PermissionDenied or one of `refusals` end it as
    denied, a VirtError or any other exception as failed, with its reason before the starting `message`.

    A failure keeps libvirt's message in full; `domains.errors.error_message` redacts it for a reader
    who may not see host details.
    """
    entry = _create(actor=actor, action=action, host=host, domain_uuid=domain_uuid, domain_name=domain_name,
                    client_addr=client_addr, message=message, secrets=secrets)

    def finish(result: Result, reason: str | None = None) -> None:
        if reason is not None:
            entry.message = f"{reason}; {_in_log_language(message)}" if message else reason
        entry.result, entry.finished_at = result, timezone.now()
        entry.message = _masked(entry.message, secrets)  # what the caller set meanwhile may still be lazy
        entry.save(update_fields=["result", "message", "finished_at"])

    try:
        yield entry
    except Exception as error:
        with translation.override(settings.LANGUAGE_CODE):
            outcome = _outcome(error, refusals)
        finish(*outcome)
        raise
    else:
        finish(Result.SUCCEEDED)


def _outcome(error: Exception, refusals: tuple[type[Exception], ...]) -> tuple[Result, str]:
    """How an action that raised `error` ends in its row, and why."""
    if isinstance(error, refusals):
        return Result.DENIED, f"refused: {error}"
    if isinstance(error, Http404):
        return Result.DENIED, "Not visible to this user."
    if isinstance(error, PermissionDenied):
        return Result.DENIED, "Not permitted for this user."
    if isinstance(error, VirtError):
        return Result.FAILED, error.full_message
    if isinstance(error, ValidationError):
        return Result.FAILED, "; ".join(error.messages)
    return Result.FAILED, type(error).__name__


def refuse(
    *,
    actor: User,
    action: str,
    host: Host | None = None,
    domain_uuid: str | None = None,
    client_addr: str | None = None,
) -> NoReturn:
    """Records a refused attempt as denied and answers as if the target did not exist."""
    with audited(actor=actor, action=action, host=host, domain_uuid=domain_uuid, client_addr=client_addr):
        raise Http404("Not found.")


def record(
    *,
    actor: User | None,
    action: str,
    result: Result,
    message: StrOrPromise,
    host: Host | None = None,
    domain_uuid: str | UUID | None = None,
    domain_name: str = "",
    client_addr: str | None = None,
    actor_name: str = "",
    host_name: str = "",
    secrets: Collection[str] = (),
) -> AuditEntry:
    """A row finished as it is written. `actor_name` and `host_name`, when given, are the names kept instead
    of those read from `actor` and `host` (a migration job keeps the names it was asked with)."""
    return _create(actor=actor, action=action, host=host, domain_uuid=domain_uuid, domain_name=domain_name,
                   client_addr=client_addr, message=message, secrets=secrets, actor_name=actor_name,
                   host_name=host_name, result=result)


_BURST_COUNT = re.compile(r"; (\d+) requests? refused$")


def count_refusal(
    *,
    actor: User,
    action: str,
    reason: StrOrPromise,
    gap: timedelta,
    host: Host | None = None,
    domain_uuid: UUID | None = None,
    client_addr: str | None = None,
) -> int:
    """One denied row per burst of the same refusal, so a client that keeps asking does not flood the log:
    the first writes it, each one within `gap` of the last counts itself on it. Returns the count so far."""
    now = timezone.now()
    prefix = f"refused: {_in_log_language(reason)}"
    burst = (AuditEntry.objects.filter(actor=actor, action=action, result=Result.DENIED, message__startswith=prefix,
                                       finished_at__gte=now - gap)
             .order_by("-finished_at").first())
    if burst is None:
        record(actor=actor, action=action, result=Result.DENIED, message=f"{prefix}; 1 request refused", host=host,
               domain_uuid=domain_uuid, client_addr=client_addr)
        return 1
    counted = _BURST_COUNT.search(burst.message)
    count = int(counted.group(1)) + 1 if counted else 2
    burst.message, burst.finished_at = f"{prefix}; {count} requests refused", now
    burst.save(update_fields=["message", "finished_at"])
    return count
