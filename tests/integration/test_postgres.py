"""The dashboard on PostgreSQL: a real server from Debian's package, started and stopped here.

DATABASE_URL switches the database; this runs migrations, the bootstrap and a listing against it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def as_postgres(*command: str) -> None:
    # PostgreSQL refuses to run as root.
    completed = subprocess.run(["runuser", "-u", "postgres", "--", *command], capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0, f"{command[0]}: {completed.stderr}"


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    # Not pytest's tmp_path: its parents are root's alone, and the server runs as postgres.
    home = Path(tempfile.mkdtemp(prefix="vmportal-postgres-"))
    data, sockets = home / "data", home / "sockets"
    sockets.mkdir()
    shutil.chown(home, "postgres")
    shutil.chown(sockets, "postgres")
    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
    # Unix socket only: the server listens on no network address at all.
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(home / "log"), "start",
                "-o", f"-c listen_addresses='' -k {sockets}")
    try:
        as_postgres(str(PG_BIN / "createdb"), "-h", str(sockets), "vmportal")
        yield f"postgres://postgres@{str(sockets).replace('/', '%2F')}/vmportal"
    finally:
        as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "stop", "-m", "fast")
        shutil.rmtree(home)


def manage(database_url: str, var_dir: Path, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": database_url, "VMPORTAL_VAR_DIR": str(var_dir),
           "DJANGO_SETTINGS_MODULE": "vmportal.settings"}
    completed = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def test_migrate_bootstrap_and_list_on_postgresql(database_url: str, tmp_path: Path):
    manage(database_url, tmp_path, "migrate", "--noinput", "-v0")
    assert "Admin login: admin /" in manage(database_url, tmp_path, "bootstrap")
    engine = manage(database_url, tmp_path, "shell", "--no-imports", "-c",
                    "from django.db import connection; print(connection.vendor)")
    assert engine.strip().splitlines()[-1] == "postgresql"
    listing = manage(database_url, tmp_path, "shell", "--no-imports", "-c", (
        "from django.test import Client; from accounts.models import User\n"
        "client = Client(HTTP_HOST='localhost'); client.force_login(User.objects.get(username='admin'))\n"
        "print(client.get('/domains/', {'all': '', 'format': 'json'}).content.decode())"))
    rows = json.loads(listing.strip().splitlines()[-1])["domains"]
    assert [(row["host"], row["name"]) for row in rows] == [("embedded", "test")]
    audit = manage(database_url, tmp_path, "shell", "--no-imports", "-c", (
        "from audit.models import AuditEntry; print(list(AuditEntry.objects.values_list('action', 'result')))"))
    assert "('host.register', 'succeeded')" in audit
    # Usage history on PostgreSQL: two samples give rates, whose points go in with one raw statement.
    assert "0 with rates" in manage(database_url, tmp_path, "collectstats", "--once")
    assert "1 with rates" in manage(database_url, tmp_path, "collectstats", "--once")
    kept = manage(database_url, tmp_path, "shell", "--no-imports", "-c", (
        "from domains.models import UsagePoint\n"
        "print(sorted({(r, u is None) for r, u in UsagePoint.objects.values_list('resolution', 'domain_uuid')}))"))
    assert kept.strip().splitlines()[-1] == str([(resolution, host_own) for resolution in (10, 60, 1800)
                                                 for host_own in (False, True)])
