"""The console proxy serves every console in a thread of one process: each connection keeps its own ticket,
target and user, and ending one console ends no other.

The displays are made here (each says its name, then echoes), reported by a libvirt test-driver host as
running VMs' VNC displays: the real `manage.py consoleproxy` finds them as it finds a guest's. No lab.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.consoles import (
    PAGE_ORIGIN,
    ClientWebSocket,
    ConsoleStack,
    NamedDisplay,
    Stream,
    close_reason,
    display_host_uri,
    echoes,
    greeting,
    wait_for,
)

pytestmark = pytest.mark.integration

VMS = {"vm-ann": "7e5d0000-0000-4000-8000-00000000000a", "vm-bob": "7e5d0000-0000-4000-8000-00000000000b"}
HOST = "threads"
CONSOLES_EACH = 12


@dataclass
class Portal:
    stack: ConsoleStack
    port: int
    sessions: dict[str, str]

    @property
    def pid(self) -> int:
        return self.stack.processes[-1].pid

    def tickets(self, consoles: list[tuple[str, str]]) -> list[str]:
        """A ticket for each (user, VM), issued in one shell: all well within their 30 s to open."""
        return list(self.stack.shell(
            "from consoles import services\nfrom accounts.models import User\nresult = [services.console_tickets_issue("
            f"actor=User.objects.get(username=user), host_name={HOST!r}, uuid=uuid, origin={PAGE_ORIGIN!r},"
            f" client_addr='127.0.0.1').tokens[0] for user, uuid in {[(user, VMS[vm]) for user, vm in consoles]!r}]\n"))

    def open(self, user: str, token: str) -> Stream:
        ws = ClientWebSocket({"Cookie": f"sessionid={self.sessions[user]}"})
        return Stream(ws.open(f"ws://127.0.0.1:{self.port}/websockify?token={token}", origin=PAGE_ORIGIN,
                              timeout=30.0))


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    displays = {name: NamedDisplay(name) for name in VMS}
    work = tmp_path_factory.mktemp("console-threads")
    stack = ConsoleStack(Path(work / "var"), settings={
        "VMPORTAL_CONSOLE_RECHECK_SECONDS": "0.5",
        "VMPORTAL_CONSOLE_TICKETS_PER_MINUTE": "0", "VMPORTAL_CONSOLE_OPEN_LIMIT": "0"})
    stack.var_dir.mkdir()
    stack.setup({HOST: display_host_uri(work / "inventory.xml",
                                         {name: (uuid, displays[name].port) for name, uuid in VMS.items()})})
    # ann may open vm-ann's console, bob vm-bob's; both may open vm-ann's (the revocation test).
    stack.user("ann", grants=((HOST, VMS["vm-ann"]),))
    stack.user("bob", grants=((HOST, VMS["vm-bob"]), (HOST, VMS["vm-ann"])))
    portal = Portal(stack, stack.proxy(), {user: stack.login(user) for user in ("ann", "bob")})
    yield portal
    stack.stop()
    for display in displays.values():
        display.listener.close()


def proxy_children(pid: int) -> list[str]:
    return [child for task in Path(f"/proc/{pid}/task").iterdir() for child in (task / "children").read_text().split()]


def test_consoles_opened_at_once_each_reach_their_own_tickets_display_in_one_process(portal: Portal) -> None:
    tickets = portal.tickets([("ann", "vm-ann"), ("bob", "vm-bob")] * CONSOLES_EACH)
    wanted = [(user, vm, token) for (user, vm), token in zip([("ann", "vm-ann"), ("bob", "vm-bob")] * CONSOLES_EACH,
                                                             tickets, strict=True)]  # the two users interleaved

    def open_and_greet(user: str, token: str) -> tuple[Stream, str]:
        stream = portal.open(user, token)
        return stream, greeting(stream)

    with ThreadPoolExecutor(len(wanted)) as pool:  # every upgrade in flight at once
        opened = list(pool.map(lambda each: open_and_greet(each[0], each[2]), wanted))
    try:
        assert [name for _stream, name in opened] == [vm for _user, vm, _token in wanted]
        assert all(echoes(stream) for stream, _name in opened)
        threads = len(list(Path(f"/proc/{portal.pid}/task").iterdir()))
        assert threads > len(wanted), "a thread per console"
        assert proxy_children(portal.pid) == [], "no process forked per console"
    finally:
        for stream, _name in opened:
            stream.ws.close()


def test_a_revoked_grant_closes_only_that_users_console(portal: Portal) -> None:
    ann_token, bob_token = portal.tickets([("ann", "vm-ann"), ("bob", "vm-ann")])
    ann, bob = portal.open("ann", ann_token), portal.open("bob", bob_token)
    assert greeting(ann) == greeting(bob) == "vm-ann"
    grant = ("from domains.models import Grant\nGrant.objects.filter(user__username='ann', domain_uuid={!r})"
             ".update(can_console={})")
    portal.stack.shell(grant.format(VMS["vm-ann"], False))
    try:
        assert "4001" in close_reason(ann, 1, 1)  # ended by the portal: the right was revoked
        assert echoes(bob), "bob's console of the same VM stays open"
        closes = ("from audit.models import AuditEntry\nresult = list(AuditEntry.objects.filter("
                  "action='console.close').values_list('actor_name', 'message'))")
        wait_for(lambda: any(actor == "ann" and "console right revoked" in message
                             for actor, message in portal.stack.shell(closes)), 10, "ann's close not audited")
        assert not any(actor == "bob" and "revoked" in message for actor, message in portal.stack.shell(closes))
    finally:
        portal.stack.shell(grant.format(VMS["vm-ann"], True))
        bob.ws.close()
