"""libvirt's events, one watcher per host (libvirt-python's examples/event-test.py, grown up).

`initialize()` registers libvirt's default event implementation and runs it on a daemon thread: once per
process, before any of its connections is opened (a remote connection opened without it never delivers
events and cannot keep itself alive). Importing starts nothing: whoever owns the process calls it (the
ASGI application in vmportal.asgi, `manage.py watchhosts` and `consoleproxy`, the tests' conftest).

A `HostWatcher` owns its own connection to one host: callbacks for every domain event, keepalive,
a close callback, reconnection with backoff and a full resync after every (re)connect. Callbacks
only queue the UUID with a sequence number taken from a per-host counter; the watcher's thread
re-reads the domains (in bulk, as the list does) and hands plain events to a sink. Everything a
sink receives carries that sequence: a reader keeps, per VM, the highest one it has applied, so a
resync listing taken before an event can never overwrite what that event showed. Guests with a
connected agent are handed to an AddressReader, whose news about their addresses comes back as
re-reads; a LeaseReader reads its networks' DHCP leases (leases.py), and is told when a network starts.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import libvirt

from .agent import AddressReader
from .connections import SharedConnection, is_alive, open_kept_alive, pool, translate
from .errors import HostUnreachable
from .inventory import DomainRecord, records_for
from .leases import LeaseReader

logger = logging.getLogger(__name__)

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


def initialize() -> None:
    """Register libvirt's event implementation and run its loop, once per process (as OpenStack Nova's
    `Host.initialize()`); a second call does nothing."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _loop_thread = threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True)
        _loop_thread.start()


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # the loop must outlive any one bad callback
            logger.exception("libvirt's event loop failed one iteration")
            time.sleep(0.1)


def _per_connection_state(uri: str) -> bool:
    """test:///path.xml hosts live inside each connection; only test:///default is shared in a process."""
    return uri.startswith("test://") and uri.rstrip("/") != "test:///default"


# --- What a watcher tells its sink. ---


@dataclass(frozen=True, slots=True)
class DomainChanged:
    """The domain as it is now, and as the watcher knew it before (None: new to it); `details` when
    something only the VM page shows changed."""

    seq: int
    record: DomainRecord
    details: bool = False
    previous: DomainRecord | None = None


@dataclass(frozen=True, slots=True)
class DomainRemoved:
    seq: int
    uuid: str
    last_seen: DomainRecord | None


@dataclass(frozen=True, slots=True)
class HostLost:
    """The host stopped answering; its domains as they were last seen."""

    seq: int
    message: str
    last_seen: tuple[DomainRecord, ...]


@dataclass(frozen=True, slots=True)
class HostSynced:
    """A full listing after a (re)connect: every domain the host has, and those it no longer has."""

    seq: int
    records: tuple[DomainRecord, ...]
    removed: tuple[str, ...]


HostEvent = DomainChanged | DomainRemoved | HostLost | HostSynced
Sink = Callable[[HostEvent], None]


@dataclass(frozen=True, slots=True)
class WatchedHost:
    """What a watcher knows of its host, for the list (domains.catalog) to serve without asking the host."""

    records: tuple[DomainRecord, ...]
    reachable: bool | None  # None: it has not answered yet (nor failed to)
    message: str  # why it does not answer
    listed_at: float | None  # wall-clock time of its last whole listing (events keep it current meanwhile)
    version: int  # changes with every change of `records`


@dataclass(frozen=True, slots=True)
class Changes:
    """A watcher's news since a given time: (seq, record) changed, (seq, uuid) removed, (seq, message) lost."""

    changed: tuple[tuple[int, DomainRecord], ...]
    removed: tuple[tuple[int, str], ...]
    lost: tuple[int, str] | None

# Event ids and whether they change only what the VM page shows (agent, devices).
_DOMAIN_EVENTS: dict[int, bool] = {
    libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE: False,  # also (un)define, rename, managed save, snapshot revert
    libvirt.VIR_DOMAIN_EVENT_ID_REBOOT: False,
    libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE: False,  # title, description
    libvirt.VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE: False,
    libvirt.VIR_DOMAIN_EVENT_ID_PMSUSPEND: False,
    libvirt.VIR_DOMAIN_EVENT_ID_PMSUSPEND_DISK: False,
    libvirt.VIR_DOMAIN_EVENT_ID_PMWAKEUP: False,
    libvirt.VIR_DOMAIN_EVENT_ID_CONTROL_ERROR: False,
    libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED: False,
    libvirt.VIR_DOMAIN_EVENT_ID_TUNABLE: False,
    libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE: True,
    libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED: True,
    libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED: True,
    libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED: True,
}


@dataclass(frozen=True, slots=True)
class _Reread:
    uuid: str
    seq: int
    details: bool
    agent: bool | None = None  # the agent (dis)connected, or no news of it


@dataclass(frozen=True, slots=True)
class _Closed:
    generation: int
    reason: int


class _Resync:
    pass


class _Stop:
    pass


_Work = _Reread | _Closed | _Resync | _Stop


GONE_MEMORY_SECONDS = 600.0
# How often a periodic listing reads again what events keep current (titles, an inactive domain's vCPUs and
# memory): for changes some APIs make without an event.
FULL_READ_SECONDS = 600.0


class _Clock:
    """Sequence numbers that are also times: microseconds since the epoch, each one greater than the last.

    So a restarted watcher continues above its predecessor, and a page can ask what changed since it
    was rendered (HostWatcher.changes_since).
    """

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last


class HostWatcher:
    """Watches one host on its own connection and thread; `sink` is called on that thread."""

    def __init__(
        self,
        uri: str,
        sink: Sink,
        *,
        name: str = "",
        keepalive: tuple[int, int] | None = None,
        resync_seconds: float = 30.0,
        backoff: tuple[float, float] = (0.25, 5.0),
        lease_interval: float = 30.0,
    ) -> None:
        self.uri = uri
        self.name = name or uri
        self._sink = sink
        self._keepalive = keepalive or pool.keepalive  # the deployment's (virt.configure)
        self._resync_seconds = resync_seconds
        self._backoff = backoff
        self._seq = _Clock()
        self._queue: queue.Queue[_Work] = queue.Queue()
        self._stopping = threading.Event()
        self._shared: SharedConnection | None = None  # held from connect to disconnect
        self._generation = 0
        self._callback_ids: list[int] = []
        self._network_callback_id: int | None = None
        self._records: dict[str, tuple[int, DomainRecord]] = {}  # uuid: (seq of its last change, record)
        self._gone: dict[str, int] = {}  # uuid: seq of its removal, for GONE_MEMORY_SECONDS
        self._lost_at: tuple[int, str] | None = None  # when and why the host was last found unreachable
        self._reachable: bool | None = None
        self._answered = threading.Event()  # it listed the host, or found it unreachable, at least once
        self._listed_at: float | None = None
        self._read_whole_at = 0.0  # monotonic time of the last listing that re-read every domain whole
        self._version = 0
        self._snapshot: tuple[DomainRecord, ...] | None = None  # records(), kept until they change
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.name}", daemon=True)
        self._addresses = AddressReader(uri, name=self.name, connect=self._open,
                                        changed=lambda uuid: self.nudge(uuid))
        self._leases = LeaseReader(uri, name=self.name, connect=self._open, changed=lambda uuid: self.nudge(uuid),
                                   interval=lease_interval)

    # --- Used from other threads. ---

    def start(self) -> HostWatcher:
        self._addresses.start()
        self._leases.start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._queue.put(_Stop())
        self._addresses.stop(timeout)
        self._leases.stop(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def nudge(self, uuid: str | None = None) -> None:
        """Re-read one domain (a change libvirt has no event for), or the whole host."""
        self._queue.put(_Resync() if uuid is None else _Reread(uuid.lower(), self._seq(), False))

    @property
    def reachable(self) -> bool | None:
        return self._reachable

    @property
    def alive(self) -> bool:
        """Its threads run (a watcher that died on an error is replaced by its supervisor)."""
        return self._thread.is_alive() and self._addresses.alive and self._leases.alive

    def records(self) -> list[DomainRecord]:
        return list(self.watched().records)

    def watched(self) -> WatchedHost:
        with self._lock:
            if self._snapshot is None:
                self._snapshot = tuple(record for _seq, record in self._records.values())
            records, version = self._snapshot, self._version
        lost = self._lost_at[1] if self._reachable is False and self._lost_at else ""
        return WatchedHost(records, self._reachable, lost, self._listed_at, version)

    def wait_for_answer(self, timeout: float) -> bool:
        """Wait until the host has been listed or found unreachable once; False if that took too long."""
        return self._answered.wait(timeout)

    def changes_since(self, seq: int) -> Changes:
        """What happened after `seq`, a time in microseconds (a page rendered then asks)."""
        with self._lock:
            changed = tuple((seen, record) for seen, record in self._records.values() if seen > seq)
            removed = tuple((seen, uuid) for uuid, seen in self._gone.items() if seen > seq)
        lost = self._lost_at if self._reachable is False and self._lost_at and self._lost_at[0] > seq else None
        return Changes(changed, removed, lost)

    # --- The watcher's thread. ---

    def _run(self) -> None:
        delay = self._backoff[0]
        next_resync = 0.0
        try:
            while not self._stopping.is_set():
                if self._conn is None:
                    try:
                        self._connect()
                        self._resync(full=True)
                    except libvirt.libvirtError as error:
                        self._disconnect()
                        self._lost(error)
                        self._stopping.wait(delay)
                        delay = min(delay * 2, self._backoff[1])
                        continue
                    delay = self._backoff[0]
                    next_resync = time.monotonic() + self._resync_seconds
                try:
                    work = [self._queue.get(timeout=max(0.0, next_resync - time.monotonic()))]
                except queue.Empty:
                    work = [_Resync()]
                    next_resync = time.monotonic() + self._resync_seconds
                while True:  # everything already queued goes in one round of reads
                    try:
                        work.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                try:
                    self._handle(work)
                except libvirt.libvirtError as error:
                    if isinstance(translate(error), HostUnreachable) or not self._alive():
                        self._disconnect()
                        self._lost(error)
                    else:
                        logger.warning("watching %s: %s", self.name, error)
        except Exception:  # the thread ends here; the supervisor starts another watcher in its place
            logger.exception("the watcher of %s failed", self.name)
        finally:
            self._disconnect()

    def _handle(self, work: list[_Work]) -> None:
        if any(isinstance(item, _Stop) for item in work):
            return
        if any(isinstance(item, _Closed) and item.generation == self._generation for item in work):
            self._disconnect()
            self._lost(None)
            return
        rereads: dict[str, _Reread] = {}
        for item in work:  # in the order queued: the latest news of the agent wins
            if isinstance(item, _Reread):
                seen = rereads.get(item.uuid)
                rereads[item.uuid] = _Reread(
                    item.uuid, max(item.seq, seen.seq if seen else 0), item.details or bool(seen and seen.details),
                    item.agent if item.agent is not None else seen.agent if seen else None,
                )
        if any(isinstance(item, _Resync) for item in work):
            # A listing taken now is newer than every event queued so far; what a listing cannot tell (an
            # agent that came or went, devices that changed) is still read after it, as news newer than it.
            self._resync(full=False)
            rereads = {uuid: _Reread(uuid, self._seq(), item.details, item.agent)
                       for uuid, item in rereads.items() if item.details or item.agent is not None}
        if rereads:
            self._reread(list(rereads.values()))

    def _open(self) -> libvirt.virConnect:
        """A connection of the watcher's own (or of its address reader's), with the deployment's keepalive."""
        return open_kept_alive(self.uri, self._keepalive)

    def _connect(self) -> None:
        # A test:// inventory file gives every connection its own copy: watch the dashboard's own one.
        try:
            shared = pool.get(self.uri) if _per_connection_state(self.uri) else SharedConnection(self._open())
        except HostUnreachable as error:  # the pool's own deadline: tried again like any failed connect
            raise libvirt.libvirtError(str(error)) from error
        if not shared.acquire():  # the pool retired it meanwhile: the next round takes its new one
            raise libvirt.libvirtError("the pooled connection was closed while the watcher took it")
        self._generation += 1
        self._shared = shared
        conn = shared.conn
        conn.registerCloseCallback(self._on_close, self._generation)
        for event_id, details in _DOMAIN_EVENTS.items():
            callback = self._on_agent if event_id == libvirt.VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE else \
                self._callback(details)
            self._callback_ids.append(conn.domainEventRegisterAny(None, event_id, callback, None))
        try:
            self._network_callback_id = conn.networkEventRegisterAny(
                None, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE, self._on_network, None)
        except libvirt.libvirtError as error:  # a host without libvirt's network driver: leases every interval
            if not is_alive(conn):
                raise
            logger.info("%s tells no network events: %s", self.name, error)
        logger.info("watching %s", self.name)

    def _disconnect(self) -> None:
        shared, self._shared = self._shared, None
        if shared is None:
            return
        conn = shared.conn
        self._generation += 1
        for callback_id in self._callback_ids:
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventDeregisterAny(callback_id)
        self._callback_ids = []
        if self._network_callback_id is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.networkEventDeregisterAny(self._network_callback_id)
            self._network_callback_id = None
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        if not _per_connection_state(self.uri):  # the pool's connection stays the pool's
            shared.retire()
        shared.release()

    @property
    def _conn(self) -> libvirt.virConnect | None:
        return self._shared.conn if self._shared is not None else None

    def _alive(self) -> bool:
        return self._conn is not None and is_alive(self._conn)

    # Called on libvirt's event loop thread: only queue work there.

    def _callback(self, details: bool) -> Callable[..., None]:
        def queue_reread(_conn: libvirt.virConnect, dom: libvirt.virDomain, *_args: object) -> None:
            self._queue.put(_Reread(dom.UUIDString().lower(), self._seq(), details))

        return queue_reread

    def _on_agent(self, _conn: libvirt.virConnect, dom: libvirt.virDomain, state: int, _reason: int,
                  _opaque: object) -> None:
        connected = state == libvirt.VIR_CONNECT_DOMAIN_EVENT_AGENT_LIFECYCLE_STATE_CONNECTED
        self._queue.put(_Reread(dom.UUIDString().lower(), self._seq(), True, connected))

    def _on_network(self, _conn: libvirt.virConnect, _network: libvirt.virNetwork, event: int, _detail: int,
                    _opaque: object) -> None:
        if event == libvirt.VIR_NETWORK_EVENT_STARTED:  # its dnsmasq reads back the leases it had
            self._leases.poke()

    def _on_close(self, _conn: libvirt.virConnect, reason: int, generation: int) -> None:
        self._queue.put(_Closed(generation, reason))

    # Reads and what they tell the sink.

    def _connection(self) -> libvirt.virConnect:
        if self._conn is None:
            raise RuntimeError(f"{self.name}: read without a connection")
        return self._conn

    def _resync(self, *, full: bool) -> None:
        conn = self._connection()
        seq = self._seq()
        # A title, or an inactive domain's vCPUs and memory, change with an event (metadata, define) the
        # watcher re-reads on; a full listing, after a (re)connect, may have missed some.
        whole = full or time.monotonic() - self._read_whole_at > FULL_READ_SECONDS
        with self._lock:
            known = {} if whole else {uuid: record for uuid, (_seq, record) in self._records.items()}
        listed = records_for(self.uri, conn, conn.listAllDomains(0), known=known)
        if whole:
            self._read_whole_at = time.monotonic()
        was_reachable, self._reachable = self._reachable, True
        self._listed_at = time.time()
        changed: list[tuple[DomainRecord, DomainRecord | None]] = []
        with self._lock:
            previous = self._records
            self._records = {}
            for record in listed:
                seen = previous.get(record.uuid)
                # Kept as it was when an event newer than this listing already told, or nothing changed.
                if seen is not None and (seen[0] > seq or seen[1] == record):
                    self._records[record.uuid] = seen
                    continue
                self._records[record.uuid] = (seq, record)
                self._gone.pop(record.uuid, None)
                changed.append((record, seen[1] if seen is not None else None))
            removed = [(uuid, record) for uuid, (_seq, record) in previous.items() if uuid not in self._records]
            self._note_gone([uuid for uuid, _record in removed], seq)
            if changed or removed or was_reachable is not True:
                self._changed()
        if full:  # guests that were running before we looked may have an agent to ask
            for record in listed:
                if record.active:
                    self._addresses.follow(record.uuid, unconfirmed=True)
        self._answered.set()
        if full or was_reachable is not True:
            if was_reachable is False:
                logger.info("%s answers again", self.name)
            self._emit(HostSynced(seq, tuple(record for _seq, record in self._records.values()),
                                  tuple(uuid for uuid, _record in removed)))
            return
        for record, before in changed:
            self._emit(DomainChanged(seq, record, previous=before))
        for uuid, last in removed:
            self._emit(DomainRemoved(seq, uuid, last))

    def _reread(self, rereads: list[_Reread]) -> None:
        conn = self._connection()
        for item in rereads:
            if item.agent:
                self._addresses.follow(item.uuid)
            elif item.agent is False:
                self._addresses.forget(item.uuid)
        found: dict[str, libvirt.virDomain] = {}
        gone: list[_Reread] = []
        for item in rereads:
            try:
                found[item.uuid] = conn.lookupByUUIDString(item.uuid)
            except libvirt.libvirtError as error:
                if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                gone.append(item)
        records = {record.uuid: record for record in self._records_of(list(found.values()))}
        by_uuid = {item.uuid: item for item in rereads}
        for uuid in found:
            if uuid not in records:
                gone.append(by_uuid[uuid])
        for uuid, record in records.items():
            if not record.active:  # stopped: what its agent said no longer holds
                self._addresses.forget(uuid)
            self._apply(by_uuid[uuid], record)
        for item in gone:
            self._addresses.forget(item.uuid)
            self._apply(item, None)

    def _records_of(self, domains: list[libvirt.virDomain]) -> list[DomainRecord]:
        try:
            return records_for(self.uri, self._connection(), domains)
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
            if len(domains) == 1:
                return []
        # One of them vanished between the lookup and the read: read them one by one.
        return [record for dom in domains for record in self._records_of([dom])]

    def _apply(self, item: _Reread, record: DomainRecord | None) -> None:
        with self._lock:
            seen = self._records.get(item.uuid)
            if seen is not None and seen[0] > item.seq:
                return
            if record is None:
                if self._records.pop(item.uuid, None) is not None:
                    self._note_gone([item.uuid], item.seq)
                    self._changed()
            else:
                self._records[item.uuid] = (item.seq, record)
                self._gone.pop(item.uuid, None)
                self._changed()
        if record is None:
            if seen is not None:
                self._emit(DomainRemoved(item.seq, item.uuid, seen[1]))
        elif seen is None or seen[1] != record or item.details:
            self._emit(DomainChanged(item.seq, record, details=item.details,
                                     previous=seen[1] if seen is not None else None))

    def _changed(self) -> None:
        """Under the lock: what the list shows of the host (its records, whether it answers) changed."""
        self._version += 1
        self._snapshot = None

    def _note_gone(self, uuids: list[str], seq: int) -> None:
        """Under the lock: remember removals for a while, for pages that ask what changed since."""
        for uuid in uuids:
            self._gone[uuid] = seq
        oldest = seq - int(GONE_MEMORY_SECONDS * 1_000_000)
        for uuid in [uuid for uuid, seen in self._gone.items() if seen < oldest]:
            del self._gone[uuid]

    def _lost(self, error: libvirt.libvirtError | None) -> None:
        if error is not None:
            logger.info("%s is unreachable: %s", self.name, error)
        if self._reachable is False:
            return
        self._reachable = False
        message = str(translate(error) if error is not None else HostUnreachable())
        self._lost_at = (self._seq(), message)
        with self._lock:
            self._changed()
        self._answered.set()
        self._emit(HostLost(self._lost_at[0], message, tuple(self.records())))

    def _emit(self, event: HostEvent) -> None:
        try:
            self._sink(event)
        except Exception:
            logger.exception("the sink of %s failed on %s", self.name, type(event).__name__)
