"""The audit writer: the only code that creates audit rows, and the one place that masks secrets in them."""

from __future__ import annotations

import re

import pytest

from accounts.models import User
from audit import services as audit
from audit.models import AuditEntry
from domains.models import Host
from tests.support.source import ROOT, product_files

CREATES_A_ROW = re.compile(r"AuditEntry\.objects\.\w*create|(?<!class )AuditEntry\(")
SECRET = "Zm9vYmFyLXNlY3JldC10aWNrZXQtdmFsdWUtMDEyMzQ1Ng"


def test_one_function_creates_audit_rows() -> None:
    """Every other module goes through audit.services; a second writer would format rows its own way."""
    writers = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in product_files(migrations=False)
        for number, line in enumerate(path.read_text().splitlines(), 1) if CREATES_A_ROW.search(line)
    ]
    assert len(writers) == 1 and writers[0].startswith("audit/services.py:"), writers


def test_a_recorded_row_never_holds_the_secret_it_was_given(admin_user: User, embedded_host: Host) -> None:
    entry = audit.record(actor=admin_user, action="console.open", result=AuditEntry.Result.DENIED,
                         host=embedded_host, message=f"refused: ticket {SECRET} is unknown", secrets=(SECRET,))
    entry.refresh_from_db()
    assert SECRET not in entry.message
    assert entry.message == f"refused: ticket {audit.mask(SECRET)} is unknown"
    assert (entry.actor_name, entry.host_name, entry.finished_at is not None) == ("alice-admin", "embedded", True)


def test_an_action_that_fails_with_a_secret_in_its_error_keeps_it_masked(admin_user: User) -> None:
    with pytest.raises(RuntimeError), audit.audited(actor=admin_user, action="host.test", secrets=(SECRET,)) as entry:
        entry.message = f"sent {SECRET}"  # not kept: the failure's reason replaces it
        raise RuntimeError(SECRET)
    entry.refresh_from_db()
    assert (entry.result, entry.message) == (AuditEntry.Result.FAILED, "RuntimeError")
    with audit.audited(actor=admin_user, action="host.test", secrets=(SECRET,)) as entry:
        entry.message = f"sent {SECRET}"
    entry.refresh_from_db()
    assert (entry.result, entry.message) == (AuditEntry.Result.SUCCEEDED, f"sent {audit.mask(SECRET)}")


def test_a_failure_keeps_the_context_the_row_started_with(admin_user: User) -> None:
    class Refused(Exception):
        pass

    endings = []
    for error in (Refused("wrong origin"), KeyError("x")):
        with pytest.raises(type(error)), audit.audited(actor=admin_user, action="console.open",
                                                       message="vnc 127.0.0.1:5900", refusals=(Refused,)):
            raise error
        endings.append(AuditEntry.objects.values_list("result", "message").first())
    assert endings == [
        ("denied", "refused: wrong origin; vnc 127.0.0.1:5900"),
        ("failed", "KeyError; vnc 127.0.0.1:5900"),
    ]
