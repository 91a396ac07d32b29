"""Background work has an owner: importing the project starts nothing, and only the owners start threads."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.source import PRODUCT_PACKAGES, ROOT, product_files

# The modules that own background threads (README, "Background work"): libvirt's event loop and the
# watchers, the hosts' readers (agents' addresses and DHCP leases for the watchers, usage samplers for the
# sampling process) and the sampling process's collector, a migration's blocking call and its job's runner,
# and the console proxy's re-check of its open consoles and its TLS displays' relays.
THREAD_OWNERS = {
    "domains/virt/events.py",
    "domains/virt/readers.py",
    "domains/sampling.py",
    "domains/virt/migration.py",
    "domains/migration_jobs.py",
    "consoles/proxy.py",
}

IMPORT_EVERYTHING = f"""
import importlib, pkgutil, threading
import django, libvirt
before = threading.active_count()
django.setup()
for package in {PRODUCT_PACKAGES!r}:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
started = [thread.name for thread in threading.enumerate()][before:]
assert not started, f"threads started by imports: {{started}}"
try:
    libvirt.virEventAddTimeout(-1, lambda *args: None, None)
except libvirt.libvirtError:
    print("nothing started")
else:
    print("libvirt's event implementation was registered by an import")
"""


def test_importing_every_module_starts_no_thread_and_registers_no_event_loop() -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False, env={"DJANGO_SETTINGS_MODULE": "vmportal.settings", "PATH": "/usr/bin:/bin",
                          "VMPORTAL_VAR_DIR": str(ROOT / "var")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nothing started"


def test_only_the_owners_of_background_work_start_threads() -> None:
    starting = {
        str(path.relative_to(ROOT))
        for path in product_files()
        if re.search(r"\bThread\(", path.read_text())
    }
    assert starting <= THREAD_OWNERS, f"threads started outside their owners: {sorted(starting - THREAD_OWNERS)}"
