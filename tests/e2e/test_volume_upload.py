"""The upload form of a pool's page in Chromium: a file goes to a real lab host's pool in chunks, the progress
bar reaches 100 % although the connection drops once on the way, and the volume list, fetched again, shows
the new volume with its size; deleting it asks first. The host is registered by its unix socket:
tests/integration/test_storage_lab.py streams over SSH."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

import lab
from tests.e2e.conftest import LiveApp, Violations, login
from tests.integration.helpers import virsh
from tests.integration.test_lifecycle_lab import LAB_POOL

pytestmark = pytest.mark.e2e

HOST = "lab1-storage"
VOLUME = "it-e2e-upload.iso"
CHUNK = 8 * 1024 * 1024
SIZE = 20 * 1024 * 1024  # three chunks of upload.js: 8, 8 and 4 MiB


@pytest.fixture(scope="module")
def pool_page(live_app: LiveApp, hosts: list[lab.LabHost]) -> Iterator[str]:
    live_app.manage("hosts", "add", HOST, hosts[0].socket_uri)
    yield f"/hosts/{HOST}/pools/{LAB_POOL}/"
    live_app.manage("hosts", "remove", HOST)  # the session's later tests list the hosts they registered
    if VOLUME in virsh(hosts[0], "vol-list", LAB_POOL):  # the test failed before deleting it
        virsh(hosts[0], "vol-delete", VOLUME, "--pool", LAB_POOL)


def test_an_upload_shows_its_progress_and_the_new_volume(page: Page, live_app: LiveApp, hosts: list[lab.LabHost],
                                                         pool_page: str, tmp_path: Path) -> None:
    upload = tmp_path / VOLUME
    upload.write_bytes(bytes(range(256)) * (SIZE // 256))
    violations = Violations(page.context)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    login(page, "admin", live_app.admin_password)
    page.goto(pool_page)
    page.set_input_files("#upload-file", upload)
    expect(page.locator("#upload-name")).to_have_value(VOLUME)  # taken from the file's name
    dropped: list[str] = []

    def drop_the_second_chunk_once(route: Route) -> None:
        if f"offset={CHUNK}" in route.request.url and not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/chunk/**", drop_the_second_chunk_once)
    page.get_by_role("button", name="Upload").click()

    expect(page.locator("#upload-progress")).to_have_attribute("value", "100", timeout=60_000)
    expect(page.locator("#upload-status")).to_contain_text(f"{VOLUME} uploaded.")
    row = page.locator(f'#volumes tr[data-volume="{VOLUME}"]')
    expect(row).to_contain_text("20 MiB")  # the list fetched itself again when the upload finished
    assert f"{VOLUME} " in virsh(hosts[0], "vol-list", LAB_POOL)
    assert len(dropped) == 1  # the page asked where the upload stood, and went on from there

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#messages")).to_contain_text(f"Volume {VOLUME} deleted.")
    expect(page.locator(f'#volumes tr[data-volume="{VOLUME}"]')).to_have_count(0)
    assert errors == [] and violations.of(page) == []
