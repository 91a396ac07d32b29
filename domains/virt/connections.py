"""One pooled connection per libvirt URI, and the translation of libvirt's errors.

libvirt connections are thread-safe, so a process keeps one per host and shares it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

import libvirt
from django.utils.translation import gettext_lazy as _

from .addresses import AddressStore, use_store
from .errors import (
    AgentUnavailable,
    DomainNotFound,
    HostUnreachable,
    InvalidDefinition,
    OperationInProgress,
    OperationInvalid,
    OperationUnsupported,
    SnapshotNotFound,
    StorageNotFound,
    VirtError,
    redact,
)

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise, StrPromise

logger = logging.getLogger(__name__)


_CONNECTION_LOST = {
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_AUTH_CANCELLED,
    libvirt.VIR_ERR_AUTH_UNAVAILABLE,
    libvirt.VIR_ERR_INVALID_CONN,
}
# A system or internal error means the connection broke only when the transport raised it ("Cannot
# recv data", "client socket is closed"); from the storage or QEMU driver it is about the machine
# ("Cannot access storage file …") and the host answered it.
_TRANSPORT = {libvirt.VIR_FROM_RPC, libvirt.VIR_FROM_REMOTE, libvirt.VIR_FROM_SSH, libvirt.VIR_FROM_LIBSSH}


def translate(error: libvirt.libvirtError) -> VirtError:
    """Map a libvirtError to the project's error whose message a tenant may read.

    The summary says what kind of failure it was; libvirt's own words stay in `detail`, for the
    reader who may see them (`VirtError.full_message`) and, redacted, for everybody else.
    """
    code = error.get_error_code()
    detail = str(error)
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return DomainNotFound(detail=detail)
    if code == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
        return SnapshotNotFound(detail=detail)
    if code in (libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL):
        return StorageNotFound(detail=detail)
    if code == libvirt.VIR_ERR_OPERATION_INVALID:
        # libvirt words these for people ("domain is already running"); redacted all the same.
        message = (error.get_str2() or "").strip() or None
        return OperationInvalid(_sentence(redact(message)) if message else None, detail=detail)
    if code == libvirt.VIR_ERR_OPERATION_FAILED and error.get_str2():
        # "domain 'x' already exists …", "storage vol already exists": worded for people, but
        # another tenant's VM UUID is not ours to tell.
        return VirtError(_sentence(redact(_UUID_CLAUSE.sub("", error.get_str2()))), detail=detail)
    if code in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
        return OperationUnsupported(detail=detail)
    if code == libvirt.VIR_ERR_OPERATION_TIMEOUT:
        return OperationInProgress(detail=detail)
    if code in (libvirt.VIR_ERR_AGENT_UNRESPONSIVE, libvirt.VIR_ERR_AGENT_UNSYNCED):
        return AgentUnavailable(detail=detail)
    if code in (libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_XML_DETAIL,
                libvirt.VIR_ERR_CONFIG_UNSUPPORTED, libvirt.VIR_ERR_DOM_EXIST,
                libvirt.VIR_ERR_STORAGE_VOL_EXIST):
        return InvalidDefinition(_sentence(redact(error.get_error_message())), detail=detail)
    if code in _CONNECTION_LOST or (
        code in (libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_INTERNAL_ERROR)
        and error.get_error_domain() in _TRANSPORT
    ):
        return HostUnreachable(detail=detail, cause=unreachable_cause(detail))
    return VirtError(detail=detail)


NO_ANSWER_IN_TIME = _("The host did not answer in time.")
# What stopped a connection, told from the transport's words: libvirt reports all of these as a system
# error (a refused TLS certificate as an authentication failure) of its RPC layer, so only the message
# tells them apart. The first match wins: SSH passes on the far side's words ("Failed to connect socket"
# there is libvirtd missing), and a unix socket that refuses is a stopped daemon, not a closed port.
_CAUSES: tuple[tuple[re.Pattern[str], StrPromise], ...] = (
    (re.compile(r"resolve (?:address|hostname)|Name or service not known|No address associated"),
     _("The host's name or address was not found (DNS).")),
    (re.compile(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED"),
     _("SSH refused the host's key: it is not the one pinned in known_hosts.")),
    (re.compile(r"Permission denied \(|Too many authentication failures"),
     _("SSH refused the login: the key was not accepted.")),
    (re.compile(r"Cannot (?:read|access) [^:]*(?:certificate|key)"),
     _("TLS is not set up on the dashboard's side: a CA or client certificate is missing.")),
    (re.compile(r"verify peer's certificate|TLS handshake failed|TLS confirmation|certificate"),
     _("TLS was refused: the host's certificate is not from the configured CA, or the port does not speak TLS.")),
    (re.compile(r"Failed to connect socket to [^\n]*: (?:No such file or directory|Connection refused)"
                r"|unix connect failed"),
     _("libvirtd is not running there: its socket is missing or nothing listens on it.")),
    (re.compile(r"Connection refused"), _("The host refused the connection: nothing listens on that port.")),
    (re.compile(r"No route to host|Network is unreachable"), _("There is no network route to the host.")),
    (re.compile(r"timed out"), NO_ANSWER_IN_TIME),
    (re.compile(r"keepalive timeout"), _("The host stopped answering: it missed its keepalive pings.")),
)


def unreachable_cause(message: str) -> StrOrPromise:
    """What stopped a connection, in words, from libvirt's message; "" when the message does not tell."""
    return next((words for pattern, words in _CAUSES if pattern.search(message)), "")


_UUID_CLAUSE = re.compile(r"\s*with uuid [0-9a-fA-F-]{36}")


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


class SharedConnection:
    """A libvirt connection several threads use, closed only once none of them is inside a call on it.

    virConnectClose while another thread is in a call on the same connection frees what that call
    uses, and the process crashes (seen when a watcher dropped a silent host while its address reader
    was asking it). So every user holds it (acquire/release, or the pool's `use`), and `retire` closes it when
    the last one lets go; a retired connection is not lent again.
    """

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.conn = conn
        self._users = 0
        self._retired = False
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        """Hold it for a while; False when it is retired (ask the pool again)."""
        with self._lock:
            if self._retired:
                return False
            self._users += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._retired and self._users == 0
        if last:
            close_quietly(self.conn)

    def retire(self) -> None:
        """No new users; closed now if nobody holds it, else when the last holder releases it."""
        with self._lock:
            if self._retired:
                return
            self._retired = True
            idle = self._users == 0
        if idle:
            close_quietly(self.conn)


class ReaderConnection:
    """A background reader's own connection, used on the reader's thread only, opened again after its host
    was lost: a call waiting on a host gone silent must not sit inside the watcher's connection."""

    def __init__(self, uri: str, connect: Callable[[], libvirt.virConnect]) -> None:
        self.uri = uri
        self._connect = connect
        self._conn: libvirt.virConnect | None = None

    def get(self) -> libvirt.virConnect | None:
        """The connection, opened again if it was lost; None while the host does not answer."""
        if self._conn is not None and not is_alive(self._conn):
            self.close()
        if self._conn is None:
            try:
                self._conn = self._connect()
            except libvirt.libvirtError as error:
                logger.debug("reading %s: %s", self.uri, error)
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)


class ConnectionPool:
    """Open connections by URI; a connection found dead is dropped and reopened.

    Opening waits at most `open_timeout` seconds: a host that accepts but never answers (or an SSH
    connect that hangs) is reported unreachable instead of holding the request. The open goes on in
    the background, and one that succeeds late is kept for the next request.
    """

    def __init__(self, open_timeout: float = 10.0, keepalive: tuple[int, int] = (2, 3)) -> None:
        self.open_timeout = open_timeout
        # libvirt's (interval, count): a call on a connection to a host gone silent fails after about
        # interval * (count + 1) seconds instead of waiting for TCP (or, on a unix socket, forever).
        self.keepalive = keepalive
        self._connections: dict[str, SharedConnection] = {}
        self._opening: dict[str, Future[SharedConnection]] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="virt-open")

    def get(self, uri: str) -> SharedConnection:
        """The pooled connection to `uri`, opened if need be; hold it (`acquire`) while using it."""
        with self._lock:
            shared = self._connections.get(uri)
            if shared is not None and is_alive(shared.conn):
                return shared
            opening = self._opening.get(uri)
            if opening is None:
                opening = self._opening[uri] = self._executor.submit(self._open, uri)
        try:
            return opening.result(timeout=self.open_timeout)
        except TimeoutError as error:
            raise HostUnreachable(NO_ANSWER_IN_TIME) from error

    @contextmanager
    def use(self, uri: str) -> Iterator[libvirt.virConnect]:
        """The pooled connection to `uri`, held for the block: nobody closes it under this thread's calls."""
        shared = self.get(uri)
        while not shared.acquire():  # retired between the two: the pool has (or opens) a new one
            shared = self.get(uri)
        try:
            yield shared.conn
        finally:
            shared.release()

    def _open(self, uri: str) -> SharedConnection:
        try:
            fresh = libvirt.open(uri)
        except libvirt.libvirtError as error:
            with self._lock:
                self._opening.pop(uri, None)
            raise HostUnreachable(detail=str(error), cause=unreachable_cause(str(error))) from error
        try:
            fresh.setKeepAlive(*self.keepalive)
        except libvirt.libvirtError as error:  # a local driver (test://), or a process without an event loop
            logger.debug("no keepalive on %s: %s", uri, error)
        shared = SharedConnection(fresh)
        with self._lock:
            self._opening.pop(uri, None)
            stale = self._connections.pop(uri, None)
            self._connections[uri] = shared
        if stale is not None:
            stale.retire()
        return shared

    def discard(self, uri: str) -> None:
        with self._lock:
            shared = self._connections.pop(uri, None)
        if shared is not None:
            shared.retire()

    def close_all(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for shared in connections:
            shared.retire()


def close_quietly(conn: libvirt.virConnect | None) -> None:
    """Close a connection only this thread uses (or a SharedConnection's last user does)."""
    if conn is None:
        return
    try:
        conn.close()
    except libvirt.libvirtError:
        logger.debug("closing a libvirt connection failed", exc_info=True)


pool = ConnectionPool()


def configure(*, open_timeout: float, keepalive: tuple[int, int], addresses: AddressStore) -> None:
    """The adapter's settings for this process; every Django process takes them when it starts
    (DomainsConfig.ready). Nothing to run or stop: the background work is `initialize()`'s (events.py)."""
    # Before the first connection: libvirt prints every error to stderr by default; we log translated ones.
    libvirt.registerErrorHandler(_ignore_libvirt_stderr, None)
    pool.open_timeout = open_timeout
    pool.keepalive = keepalive
    use_store(addresses)


def _ignore_libvirt_stderr(_ctx: object, _error: object) -> None:
    pass


def open_kept_alive(uri: str, keepalive: tuple[int, int]) -> libvirt.virConnect:
    """A connection of the caller's own (a watcher's, its address reader's, a usage sampler's), with keepalive."""
    conn = libvirt.open(uri)
    try:
        conn.setKeepAlive(*keepalive)
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:  # local drivers (test://) have none
            conn.close()
            raise
    return conn


@contextmanager
def connection(uri: str) -> Iterator[libvirt.virConnect]:
    """A pooled connection to `uri`, held for the block; libvirt errors leave as the project's own errors."""
    with pool.use(uri) as conn:
        try:
            yield conn
        except libvirt.libvirtError as error:
            translated = translate(error)
            if isinstance(translated, HostUnreachable):
                if is_alive(conn):
                    # The host answered: what it could not reach was a peer (a migration's destination).
                    translated = VirtError(detail=translated.detail)
                else:
                    pool.discard(uri)
            logger.info("libvirt error on %s: %s", uri, translated.detail)
            try:
                raise translated from error
            finally:
                # Its traceback holds this frame: without this, a cycle keeps the libvirt objects of the failed
                # call (and so test:///default's state) alive until the garbage collector runs.
                del translated


def is_alive(conn: libvirt.virConnect) -> bool:
    """Whether the connection still works (libvirt closes one whose host missed its keepalive pings)."""
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False
