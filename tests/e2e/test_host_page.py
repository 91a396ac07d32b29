"""The host page in Chromium: an admin sees the lab-xml host's own usage drawn in four charts, fetched again every
sampling interval (the host page has no live pushes), and its top consumers from the server's own samples.

The host's history (UsagePoint rows without a VM) is seeded through `manage.py shell` into the session server's
database, as tests/e2e/test_usage_charts.py seeds a VM's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import LabHost, LiveApp, Violations, login
from tests.e2e.test_usage_charts import legend, shown, usage_of, wait_for_span

pytestmark = pytest.mark.e2e

POINTS = 20
CPU = 12.5  # of the host's CPUs, every seeded point's average; the maxima are 1.5 times each average
MEMORY_KIB = 3 * 1024 * 1024

# The host's own points, ending a minute ago: the server's collector writes only the buckets that close after
# the seed, so none of these is one it already wrote (a bucket written twice keeps its first).
SEED = """
import time
from domains import history
from domains.models import Host, UsagePoint

host = Host.objects.get(name={host!r})
UsagePoint.objects.filter(host=host, domain_uuid=None).delete()
average = {{name: 1000.0 for name in history.FIGURES}}
average.update(cpu_percent={cpu}, host_cpu_percent={cpu}, memory_used_kib={memory})
last = int(time.time()) // 10 * 10 - 60
history.save([history.Point(host.pk, history.HOST, 10, last - step * 10, 1, average,
                            {{name: 1.5 * value for name, value in average.items()}}) for step in range({count})])
"""


@pytest.fixture(scope="module")
def host_page(live_app: LiveApp, lab_host: LabHost) -> str:
    live_app.shell(SEED.format(host=lab_host.name, cpu=CPU, memory=MEMORY_KIB, count=POINTS))
    return f"/hosts/{lab_host.name}/"


@pytest.fixture
def errors(page: Page) -> Iterator[list[str]]:
    """The page's uncaught script errors."""
    found: list[str] = []
    page.on("pageerror", lambda error: found.append(str(error)))
    yield found


def test_an_admin_sees_the_host_s_own_usage_in_four_charts_fetched_again_every_interval(
    page: Page, live_app: LiveApp, lab_host: LabHost, host_page: str, errors: list[str]
) -> None:
    violations = Violations(page.context)
    login(page, "admin", live_app.admin_password)
    with page.expect_response(usage_of("hour")) as hour:
        page.goto(host_page)
    assert hour.value.status == 200
    assert f"/hosts/{lab_host.name}/usage/" in hour.value.url
    expect(page.get_by_role("heading", level=1)).to_contain_text(lab_host.name)
    expect(page.locator("#versions")).to_contain_text("libvirt")
    expect(page.locator(".host-unreachable")).to_have_count(0)

    section = page.locator("#usage")
    expect(section.locator(".usage-plot .uplot")).to_have_count(4)
    expect(section.locator(".usage-plot canvas")).to_have_count(4)
    wait_for_span(page, "hour")
    for name in ("CPU", "Memory", "Disk", "Network"):
        expect(section.get_by_role("img", name=name)).to_have_count(1)
    expect(section.locator("[data-chart=cpu] h3")).to_contain_text("% of the host's CPUs")
    assert shown(page, "usage.columns.t.length") >= POINTS
    assert shown(page, "usage.charts.cpu.data[1].slice(0, 3)") == [CPU] * 3
    assert shown(page, "usage.charts.cpu.data[2].slice(0, 3)") == [pytest.approx(1.5 * CPU)] * 3
    assert shown(page, "usage.charts.memory.data[1][0]") == MEMORY_KIB * 1024  # drawn in bytes

    # No socket pushes here: the hour is asked for again every sampling interval (2 s on this server).
    interval = shown(page, "usage.interval")
    assert interval and interval > 0, "the server takes no samples (VMPORTAL_USAGE_INTERVAL=0)"
    with page.expect_response(usage_of("hour"), timeout=(3 * interval + 5) * 1000) as again:
        pass
    assert again.value.status == 200
    # The test driver does not tell its free memory: the host's memory is what its VMs use, and says so.
    expect(section.locator("[data-memory-source=domains]")).to_be_visible(timeout=(3 * interval + 5) * 1000)
    expect(section.locator("[data-memory-source=host]")).to_be_hidden()
    page.wait_for_function("() => window.vmportalUsage.charts.memory !== undefined")
    assert "used by its VMs" in legend(page, "memory")

    # The server's own samples name the host's VMs: the top consumers link to their pages.
    page.reload()
    consumers = page.locator("#top-consumers table[data-top=cpu] a")
    expect(consumers.first).to_be_visible()
    assert all(href.startswith(f"/domains/{lab_host.name}/") for href in consumers.evaluate_all(
        "links => links.map(link => link.getAttribute('href'))"))

    assert errors == []
    assert violations.of(page) == []
