"""A libvirt connection is closed only once no thread is inside a call on it.

Closing one under another thread's call crashed the process (a watcher dropping a silent host while
its address reader asked it). These run on test:///default connections, closed for real.
"""

from __future__ import annotations

import threading

import libvirt

from domains.virt.connections import ConnectionPool, SharedConnection


def _closed(conn: libvirt.virConnect) -> bool:
    return conn._o is None  # libvirt-python drops its handle when it closes the connection


def test_retiring_a_held_connection_closes_it_when_the_last_holder_lets_go():
    shared = SharedConnection(libvirt.open("test:///default"))
    assert shared.acquire() and shared.acquire()
    shared.retire()
    assert not _closed(shared.conn)
    assert shared.conn.getHostname()  # still usable by those who hold it
    shared.release()
    assert not _closed(shared.conn)
    shared.release()
    assert _closed(shared.conn)


def test_a_retired_connection_is_not_lent_again():
    shared = SharedConnection(libvirt.open("test:///default"))
    shared.retire()
    assert _closed(shared.conn)
    assert not shared.acquire()


def test_discarding_a_pooled_connection_in_use_leaves_the_users_call_working():
    pool = ConnectionPool()
    in_call, discarded = threading.Event(), threading.Event()
    answers: list[str] = []

    def user() -> None:
        with pool.use("test:///default") as conn:
            in_call.set()
            discarded.wait(5)
            answers.append(conn.getHostname())  # on a connection the pool has let go of meanwhile
            held = conn
        answers.append("closed" if _closed(held) else "open")

    thread = threading.Thread(target=user)
    thread.start()
    assert in_call.wait(5)
    old = pool.get("test:///default")
    pool.discard("test:///default")
    discarded.set()
    thread.join(5)
    assert answers[0] and answers[1] == "closed"
    assert pool.get("test:///default") is not old  # the next user gets a new one
