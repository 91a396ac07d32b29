"""Console tickets: issue (Django page), check and open (the proxy), re-check and close (the proxy).

SECURITY.md, "Console tickets", point by point:
1. the proxy opens a console only for a ticket *and* a live session of the ticket's user (for a ticket an
   API client asked for with its token, that same token, still usable, sent as `Authorization: Bearer`);
2. a ticket is 256 random bits, stored as its SHA-256, bound to user, host, domain UUID, console kind
   and graphics endpoint, and must be opened within `conf.ticket_seconds()` (< 60);
3. it is consumed by one conditional UPDATE (`used_at IS NULL AND expires_at > now`), so of two
   racing websockets exactly one wins;
4. rights are checked when issuing and again when opening (and every few seconds while open), and
   the proxy re-reads the live endpoint from libvirt and refuses a ticket issued for another one;
5. the target is what libvirt says now, never anything from the client;
9. issue, open (allowed or refused) and close leave audit rows with the ticket's hash;
11. per-user limits on tickets per minute and consoles open at once (ConsoleLimitReached, a 429);
Websockets: a ticket opens only from the origin of the portal page that asked for it (or a trusted one).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import secrets
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Generic, TypeVar

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from accounts.sessions import session_user
from api import services as api_tokens
from audit.models import AuditEntry
from audit.services import audited, count_refusal, record
from domains import selectors, virt
from domains.access import Right, rights_on
from domains.models import Host
from vmportal.origins import origin_allowed

from . import conf
from .models import ConsoleTicket

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from accounts.models import User
    from api.models import ApiToken

logger = logging.getLogger(__name__)

# Why the portal ends an open console (console_recheck): the words of its audit row and of the socket's close
# reason (ended_close_reason); the console page explains each to its user in a sentence (ENDED_EXPLAINED).
SESSION_ENDED = "session ended"
RIGHT_REVOKED = "console right revoked"
HOST_DISABLED = "host disabled"
RECHECK_FAILED = "could not re-check the console's right"  # the database or libvirt kept failing the re-check
ENDED_EXPLAINED = {
    SESSION_ENDED: _("The console closed: your session ended (you logged out, or it expired). Log in again to "
                     "reconnect."),
    RIGHT_REVOKED: _("The console closed: your right to use this machine's console was revoked."),
    HOST_DISABLED: _("The console closed: an administrator disabled this machine's host."),
    RECHECK_FAILED: _("The console closed: the portal could not check your right to it any more. Open it again "
                      "in a moment."),
}


def ended_close_reason(reason: str) -> str:
    """The close reason of a console the portal ended (close code 4001), within what a close frame holds (the
    reasons are ASCII: 123 characters are 123 bytes)."""
    return f"Console ended: {reason}"[:123]


TOKEN_BYTES = 32  # 256 bits; secrets.token_urlsafe gives 43 URL-safe characters
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


class TicketRefused(Exception):
    """The proxy must not open this console; the message is for the log and the audit, never the ticket."""


class ConsoleLimitReached(Exception):
    """A per-user console limit refuses this request (HTTP 429); the message says which, for the user."""

    def __init__(self, message: StrOrPromise, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds until a new request can succeed, when that is known


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


# spice-html5 opens one websocket per SPICE channel (main, display, inputs, cursor, playback, record,
# ...), all to the same URL: the console page hands each its own single-use ticket from one batch.
TICKETS_PER_KIND = {"vnc": 1, "spice": 8, "serial": 1}
# A serial console's websocket is daphne's (consoles.consumers), on the portal's own origin.
SERIAL_URL = "/ws/consoles/serial/"
Endpoint = virt.GraphicsEndpoint | virt.SerialEndpoint
E = TypeVar("E", virt.GraphicsEndpoint, virt.SerialEndpoint)  # what a caller relays: displays, or serial lines


@dataclass(frozen=True)
class IssuedTickets:
    tokens: tuple[str, ...]  # shown once, to the page that asked; only their hashes are kept
    kind: str
    expires_in: int
    websocket_url: str
    domain_name: str


def console_tickets_issue(*, actor: User, host_name: str, uuid: str, origin: str = "",
                          client_addr: str | None = None, serial: bool = False,
                          api_token: ApiToken | None = None) -> IssuedTickets:
    """Fresh single-use tickets for the console of a running VM the actor may open consoles on.

    One for a VNC display, one per channel for a SPICE display (TICKETS_PER_KIND), or with `serial`
    one for its serial console, all bound to `origin`, the origin of the portal page asking
    (vmportal.origins.request_origin): their websockets open from that origin only, or from a trusted
    one. Tickets asked for with an API token (`api_token`) open with that token instead of a session.
    Raises ConsoleLimitReached when the actor asked for too many this minute or has too many
    consoles open (a serial console counts as one).
    """
    host = selectors.enabled_hosts().filter(name=host_name).first()
    _check_limits(actor=actor, host=host, uuid=uuid, client_addr=client_addr)
    with audited(actor=actor, action="console.ticket", host=host, domain_uuid=uuid, client_addr=client_addr) as entry:
        row = selectors.domain_get(user=actor, host_name=host_name, uuid=uuid, right=Right.CONSOLE)
        entry.domain_name = row.record.name
        read = virt.serial_endpoint if serial else virt.graphics_endpoint
        endpoint: Endpoint = read(row.host.uri, row.uuid)
        if isinstance(endpoint, virt.GraphicsEndpoint) and endpoint.kind == "spice" and endpoint.has_password:
            raise virt.ConsoleUnavailable(_("This machine's SPICE display has a password; the browser console "
                                            "cannot answer it without handing it to the browser."))
        tokens = tuple(secrets.token_urlsafe(TOKEN_BYTES) for _ in range(TICKETS_PER_KIND[endpoint.kind]))
        now, batch = timezone.now(), uuidlib.uuid4()
        tickets = ConsoleTicket.objects.bulk_create(
            ConsoleTicket(
                token_hash=hash_token(token), user=actor, host=row.host, domain_uuid=row.uuid,
                domain_name=row.record.name, kind=endpoint.kind, endpoint=endpoint.key,
                issued_at=now, expires_at=now + timedelta(seconds=conf.ticket_seconds()),
                origin=origin[:255], batch=batch, api_token=api_token,
            )
            for token in tokens
        )
        entry.message = f"{endpoint.kind} ticket sha256:" + ",".join(ticket.token_hash for ticket in tickets)
        entry.save(update_fields=["domain_name"])
    _purge_old_tickets(now)
    return IssuedTickets(tokens=tokens, kind=endpoint.kind, expires_in=conf.ticket_seconds(),
                         websocket_url=SERIAL_URL if serial else conf.websocket_url(), domain_name=row.record.name)


# --- Per-user limits (SECURITY.md rule 11), counted in the database: every daphne and proxy process sees them.

RATE_WINDOW = timedelta(minutes=1)
BURST_GAP = timedelta(minutes=1)  # refusals this close together are one burst: one audit row, counted
HEARTBEAT_SECONDS = 15.0  # how often an open console's proxy process writes that it still relays it
_OPEN_STALE = timedelta(seconds=60)  # an open console not seen for this long is counted no more


def _check_limits(*, actor: User, host: Host | None, uuid: str, client_addr: str | None) -> None:
    now = timezone.now()
    per_minute, open_limit = conf.tickets_per_minute(), conf.open_limit()
    if per_minute:
        recent = [issued for _batch, issued in ConsoleTicket.objects.filter(
            user=actor, issued_at__gt=now - RATE_WINDOW).values_list("batch", "issued_at").distinct()]
        if len(recent) >= per_minute:
            retry = max(1, math.ceil((min(recent) + RATE_WINDOW - now).total_seconds()))
            _audit_limit(actor=actor, limit=f"console connections per minute ({per_minute})", host=host, uuid=uuid,
                         client_addr=client_addr)
            raise ConsoleLimitReached(format_lazy(ngettext_lazy(
                "You opened {count} console connection in the last minute, the most allowed; try again in {retry} s.",
                "You opened {count} console connections in the last minute, the most allowed; try again in {retry} s.",
                len(recent)), count=len(recent), retry=retry), retry_after=retry)
    if open_limit:
        count = _open_consoles(actor.pk, now, waiting=True)
        if count >= open_limit:
            _audit_limit(actor=actor, limit=f"consoles open at once ({open_limit})", host=host, uuid=uuid,
                         client_addr=client_addr)
            raise ConsoleLimitReached(format_lazy(ngettext_lazy(
                "You have {count} console open, the most allowed at once; close one to open another.",
                "You have {count} consoles open, the most allowed at once; close one to open another.",
                count), count=count))


def _open_consoles(user_id: int, now: datetime, *, waiting: bool) -> int:
    """The user's consoles a proxy relays now (a batch of tickets is one console), and with `waiting` those
    asked for and not opened yet, counted across every proxy process by what they wrote."""
    mine = ConsoleTicket.objects.filter(user_id=user_id, closed_at__isnull=True)
    stale = max(_OPEN_STALE, timedelta(seconds=3 * conf.recheck_seconds()))
    consoles = set(mine.filter(used_at__isnull=False, seen_at__gt=now - stale).values_list("batch", flat=True))
    if waiting:
        unopened = set(mine.filter(used_at__isnull=True, expires_at__gt=now).values_list("batch", flat=True))
        # A batch some of whose tickets were opened is open (counted above) or closed, not waiting.
        unopened -= set(ConsoleTicket.objects.filter(batch__in=unopened, used_at__isnull=False)
                        .values_list("batch", flat=True))
        consoles |= unopened
    return len(consoles)


def _audit_limit(*, actor: User, limit: str, host: Host | None, uuid: str, client_addr: str | None) -> None:
    """One audit row per burst of refusals (audit.services.count_refusal), one log line for its first."""
    count = count_refusal(actor=actor, action="console.ticket", reason=f"limit of {limit}", gap=BURST_GAP, host=host,
                          domain_uuid=_uuid_or_none(uuid), client_addr=client_addr)
    if count == 1:
        logger.warning("console tickets refused for %s: limit of %s", actor.get_username(), limit)


def _uuid_or_none(value: str) -> uuidlib.UUID | None:
    try:
        return uuidlib.UUID(value)
    except ValueError:
        return None


def _purge_old_tickets(now: datetime) -> None:
    """Tickets never opened, consoles closed, and consoles whose proxy process stopped reporting (killed
    before it could close them) are kept a day (the audit log keeps the history)."""
    day_ago = now - timedelta(days=1)
    ConsoleTicket.objects.filter(
        Q(used_at__isnull=True) | Q(closed_at__isnull=False) | Q(seen_at__lt=day_ago), expires_at__lt=day_ago
    ).delete()


@dataclass(frozen=True)
class PendingConsole(Generic[E]):
    """A ticket that exists, is unused and unexpired, and whose display (or serial line) is still there."""

    ticket: ConsoleTicket
    endpoint: E


@dataclass(frozen=True)
class OpenConsole(Generic[E]):
    ticket: ConsoleTicket
    endpoint: E
    user: User
    session_key: str
    client_addr: str | None


def console_ticket_check(*, token: str, client_addr: str | None = None) -> PendingConsole[virt.GraphicsEndpoint]:
    """The proxy's first look at a ticket (websockify's token lookup): where its display is now.

    Consumes nothing; `console_open` does, after the request itself has been checked.
    """
    return _ticket_check(token, client_addr, virt.GraphicsEndpoint)


def serial_ticket_check(*, token: str, client_addr: str | None = None) -> PendingConsole[virt.SerialEndpoint]:
    """The serial socket's first look at a ticket (consoles.consumers): its VM's serial console, now."""
    return _ticket_check(token, client_addr, virt.SerialEndpoint)


def _ticket_check(token: str, client_addr: str | None, expected: type[E]) -> PendingConsole[E]:
    if not _TOKEN_SHAPE.fullmatch(token or ""):
        raise TicketRefused("malformed ticket")  # also whatever tries to smuggle in a host:port
    ticket = (ConsoleTicket.objects.select_related("user", "host")
              .filter(token_hash=hash_token(token)).first())
    if ticket is None:
        raise TicketRefused("unknown ticket")
    try:
        if ticket.used_at is not None:
            raise TicketRefused("ticket already used")
        if ticket.expires_at <= timezone.now():
            raise TicketRefused("ticket expired")
        endpoint = _live_endpoint(ticket, expected)
    except TicketRefused as refusal:
        record(actor=ticket.user, action="console.open", result=AuditEntry.Result.DENIED, host=ticket.host,
               domain_uuid=ticket.domain_uuid, domain_name=ticket.domain_name, client_addr=client_addr,
               message=f"refused: {refusal}; ticket sha256:{ticket.token_hash}", secrets=(token,))
        _log_refusal(ticket, refusal)
        raise
    return PendingConsole(ticket=ticket, endpoint=endpoint)


def console_open(*, pending: PendingConsole[E], origin: str | None, cookie_header: str | None,
                 client_addr: str | None, authorization: str | None = None) -> OpenConsole[E]:
    """Check the websocket request against its ticket, consume the ticket, audit the open.

    Raises TicketRefused (audited as denied) when anything does not match.
    """
    ticket = pending.ticket
    with _open_audited(ticket, client_addr, f"{pending.endpoint.key}, ticket sha256:{ticket.token_hash}"):
        if not origin_allowed(origin, page_origin=ticket.origin):
            raise TicketRefused(f"origin {origin!r} is not that of the page the ticket was issued to "
                                f"({ticket.origin or 'none'})")
        user, session_key = _ticket_user(ticket, cookie_header=cookie_header, authorization=authorization)
        reason = _not_allowed(ticket, user)
        if reason:
            raise TicketRefused(reason)
        now = timezone.now()
        consumed = ConsoleTicket.objects.filter(
            pk=ticket.pk, used_at__isnull=True, expires_at__gt=now,
        ).update(used_at=now, seen_at=now, client_addr=client_addr)
        if consumed != 1:
            raise TicketRefused("ticket already used or expired")
        ticket.used_at = ticket.seen_at = now
        # Counted once consumed, so of two racing opens past the limit neither slips through.
        limit = conf.open_limit()
        if limit and _open_consoles(ticket.user_id, now, waiting=False) > limit:
            _close(ticket, "too many open consoles")
            raise TicketRefused(f"the user has {limit} consoles open already")
        # Between the lookup and now the VM may have restarted elsewhere: look once more.
        endpoint = _live_endpoint(ticket, type(pending.endpoint))
        if endpoint != pending.endpoint:
            _close(ticket, "display changed while opening")
            raise TicketRefused("display changed while opening")
    logger.info("console opened: %s of %s on %s for %s from %s", ticket.kind, ticket.domain_name,
                ticket.host.name, user.get_username(), client_addr)
    return OpenConsole(ticket=ticket, endpoint=endpoint, user=user, session_key=session_key,
                       client_addr=client_addr)


def _ticket_user(ticket: ConsoleTicket, *, cookie_header: str | None, authorization: str | None) -> tuple[User, str]:
    """The ticket's user, proven by what the websocket sends besides the ticket (rule 1), and its session key:
    the session of the page that asked for the ticket, or the API token that asked for it (no session then)."""
    if ticket.api_token_id is not None:
        token = api_tokens.token_from_header(authorization)
        if token is None or token.pk != ticket.api_token_id or not token.user.is_active:
            raise TicketRefused("not the usable API token the ticket was issued to")
        return token.user, ""
    session_key = _session_key(cookie_header)
    user = session_user(session_key)
    if user is None or user.pk != ticket.user_id:
        raise TicketRefused("no session of the ticket's user")
    return user, session_key or ""


def console_recheck(console: OpenConsole) -> str | None:
    """Why an open console must close now (logout, password change, revoked token or right, disabled host),
    or None."""
    if console.ticket.api_token_id is not None:
        user = api_tokens.token_user(console.ticket.api_token_id)
        if user is None or user.pk != console.user.pk:
            return "API token revoked or expired"
    else:
        user = session_user(console.session_key)
        if user is None or user.pk != console.user.pk:
            return SESSION_ENDED
    console.ticket.host.refresh_from_db(fields=["enabled"])
    reason = _not_allowed(console.ticket, user)
    if not reason:
        _heartbeat(console.ticket)
    return reason or None


def _heartbeat(ticket: ConsoleTicket) -> None:
    """Tells every process counting open consoles that this one is still relayed (every HEARTBEAT_SECONDS)."""
    now = timezone.now()
    if ticket.seen_at is None or (now - ticket.seen_at).total_seconds() >= HEARTBEAT_SECONDS:
        ticket.seen_at = now
        ConsoleTicket.objects.filter(pk=ticket.pk, closed_at__isnull=True).update(seen_at=now)


def console_close(console: OpenConsole, *, reason: str) -> None:
    ticket = console.ticket
    _close(ticket, reason)
    opened = ticket.used_at or ticket.issued_at
    seconds = (timezone.now() - opened).total_seconds()
    with audited(actor=console.user, action="console.close", host=ticket.host, domain_uuid=str(ticket.domain_uuid),
                 domain_name=ticket.domain_name, client_addr=console.client_addr) as entry:
        entry.message = f"{reason} after {seconds:.0f} s, ticket sha256:{ticket.token_hash}"
    logger.info("console closed: %s of %s for %s: %s", ticket.kind, ticket.domain_name,
                console.user.get_username(), reason)


def _close(ticket: ConsoleTicket, reason: str) -> None:
    ticket.closed_at, ticket.close_reason = timezone.now(), reason[:255]
    ConsoleTicket.objects.filter(pk=ticket.pk).update(closed_at=ticket.closed_at, close_reason=ticket.close_reason)


def _live_endpoint(ticket: ConsoleTicket, expected: type[E]) -> E:
    if (ticket.kind == ConsoleTicket.Kind.SERIAL) != (expected is virt.SerialEndpoint):
        raise TicketRefused(f"a {ticket.kind} console ticket, not for this socket")
    if not ticket.host.enabled:
        raise TicketRefused("host disabled")
    read = virt.serial_endpoint if expected is virt.SerialEndpoint else virt.graphics_endpoint
    try:
        endpoint = read(ticket.host.uri, str(ticket.domain_uuid))
    except virt.VirtError as error:
        raise TicketRefused(f"display unavailable: {error}") from error
    if not isinstance(endpoint, expected) or endpoint.key != ticket.endpoint or endpoint.kind != ticket.kind:
        raise TicketRefused(f"display moved from {ticket.endpoint} to {endpoint.key} since the ticket was issued")
    return endpoint


def _not_allowed(ticket: ConsoleTicket, user: User) -> str:
    if not ticket.host.enabled:
        return HOST_DISABLED
    if Right.CONSOLE not in rights_on(user, host_id=ticket.host_id, uuid=str(ticket.domain_uuid)):
        return RIGHT_REVOKED
    return ""


def _log_refusal(ticket: ConsoleTicket, refusal: TicketRefused) -> None:
    logger.warning("console refused for %s (%s of %s): %s", ticket.user.get_username(), ticket.kind,
                   ticket.domain_name, refusal)


@contextmanager
def _open_audited(ticket: ConsoleTicket, client_addr: str | None, message: str) -> Iterator[AuditEntry]:
    """The console.open row: written before, completed after; a refusal is denied with its reason, and logged."""
    try:
        with audited(actor=ticket.user, action="console.open", host=ticket.host, domain_uuid=ticket.domain_uuid,
                     domain_name=ticket.domain_name, client_addr=client_addr, message=message,
                     refusals=(TicketRefused,)) as entry:
            yield entry
    except TicketRefused as refusal:
        _log_refusal(ticket, refusal)
        raise


def _session_key(cookie_header: str | None) -> str | None:
    if not cookie_header:
        return None
    try:
        morsel = SimpleCookie(cookie_header).get(settings.SESSION_COOKIE_NAME)
    except CookieError:
        return None
    return morsel.value if morsel is not None else None
