"""The VM page's usage charts in Chromium: uPlot draws the kept history, the span buttons fetch theirs, and
samples pushed on the live socket move the hour's chart.

The VM is the lab-xml host's running web-01 (libvirt's test driver, no lab needed); its history is seeded
through `manage.py shell` into the session server's database. A tenant granted that VM looks at it.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, Response, expect

from tests.e2e.conftest import LabHost, LiveApp, Violations, login

pytestmark = pytest.mark.e2e

VM = "web-01"
HOUR_POINTS, DAY_POINTS, RECENT_HALF_HOURS, OLD_HALF_HOURS = 30, 60, 10, 3
CPU = 23.4  # every seeded point's average CPU %: the maxima are 1.5 times each average
MEMORY_KIB = 512 * 1024

SEED = """
import time
from domains import history
from domains.models import Host, UsagePoint

host = Host.objects.get(name={host!r})
uuid = {uuid!r}
now = int(time.time())
UsagePoint.objects.filter(host=host, domain_uuid=uuid).delete()


def point(resolution, start, cpu):
    average = {{name: 1000.0 * (1 + cpu) for name in history.FIGURES}}
    average.update(cpu_percent=cpu, host_cpu_percent=cpu / 4, memory_used_kib={memory})
    return history.Point(host.pk, uuid, resolution, start, 1, average,
                         {{name: 1.5 * value for name, value in average.items()}})


def recent(resolution, count):
    last = now // resolution * resolution - resolution
    return [last - step * resolution for step in range(count)]


points = [point(10, start, {cpu}) for start in recent(10, {hour})]
points += [point(60, start, {cpu}) for start in recent(60, {day})]
points += [point(1800, start, {cpu}) for start in recent(1800, {recent_half_hours})]
old = [now // 1800 * 1800 - days * 86400 for days in range(8, 8 + {old_half_hours})]  # in a month, not a week
points += [point(1800, start, {cpu}) for start in old]
history.save(points)
print(min(old))
"""


@pytest.fixture(scope="module")
def usage_vm(live_app: LiveApp, lab_host: LabHost) -> dict[str, str]:
    """web-01's history seeded; a tenant who may see it. Its keys: uuid, user, url, oldest (a month's first t)."""
    uuid = lab_host.uuids[VM]
    oldest = live_app.shell(SEED.format(host=lab_host.name, uuid=uuid, memory=MEMORY_KIB, cpu=CPU, hour=HOUR_POINTS,
                                        day=DAY_POINTS, recent_half_hours=RECENT_HALF_HOURS,
                                        old_half_hours=OLD_HALF_HOURS)).strip()
    user = live_app.create_user(f"tina-usage-{secrets.token_hex(2)}")
    live_app.grant(username=user, host=lab_host.name, uuid=uuid)
    return {"uuid": uuid, "user": user, "url": f"/domains/{lab_host.name}/{uuid}/", "oldest": oldest}


def shown(page: Page, expression: str) -> Any:
    """Something of the page's charts (static/vmportal/usage.js keeps them in window.vmportalUsage)."""
    return page.evaluate(f"() => {{ const usage = window.vmportalUsage; return {expression}; }}")


def wait_for_span(page: Page, span: str) -> None:
    page.wait_for_function("span => window.vmportalUsage && window.vmportalUsage.span === span"
                           " && window.vmportalUsage.columns !== null", arg=span)


def legend(page: Page, chart: str) -> dict[str, str]:
    """The chart's legend, label: value (off the chart, the newest point's)."""
    rows = page.locator(f"[data-chart={chart}] .u-legend tr").evaluate_all(
        "rows => rows.map(row => [row.querySelector('.u-label').textContent,"
        " row.querySelector('.u-value').textContent])")
    return dict(rows)


def usage_of(span: str) -> Callable[[Response], bool]:
    return lambda response: f"/usage/?span={span}" in response.url


@pytest.fixture
def errors(page: Page) -> Iterator[list[str]]:
    """The page's uncaught script errors."""
    found: list[str] = []
    page.on("pageerror", lambda error: found.append(str(error)))
    yield found


def test_the_vm_page_draws_four_charts_of_the_hour_and_each_span_button_fetches_its_own(
    page: Page, live_app: LiveApp, usage_vm: dict[str, str], errors: list[str]
) -> None:
    violations = Violations(page.context)
    login(page, usage_vm["user"])
    with page.expect_response(usage_of("hour")) as hour:
        page.goto(usage_vm["url"])
    assert hour.value.status == 200
    section = page.locator("#usage")
    expect(section.get_by_role("heading", name="Usage")).to_be_visible()
    expect(section.locator(".usage-plot .uplot")).to_have_count(4)
    expect(section.locator(".usage-plot canvas")).to_have_count(4)
    wait_for_span(page, "hour")
    expect(section.locator(".usage-charts")).to_have_attribute("aria-busy", "false")
    for name in ("CPU", "Memory", "Disk", "Network"):
        expect(section.get_by_role("img", name=name)).to_have_count(1)

    # The hour's points, every chart's lines full of them (a sample pushed meanwhile may add one).
    assert shown(page, "usage.columns.t.length") >= HOUR_POINTS
    lengths = shown(page, "Object.values(usage.charts).map(chart => chart.data.slice(1).map("
                          "line => line.filter(value => value !== null).length))")
    assert len(lengths) == 4 and all(count >= HOUR_POINTS for counts in lengths for count in counts), lengths
    assert shown(page, "usage.charts.cpu.data[1].slice(0, 3)") == [CPU] * 3
    assert shown(page, "usage.charts.cpu.data[2].slice(0, 3)") == [pytest.approx(1.5 * CPU)] * 3
    assert shown(page, "usage.charts.memory.data[1][0]") == MEMORY_KIB * 1024  # drawn in bytes
    # Pointing at the oldest point: every chart's legend says its figures (the cursors move together).
    plot = page.locator("[data-chart=cpu] .u-over")
    box = plot.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + shown(page, "usage.charts.cpu.valToPos(usage.columns.t[0], 'x')"), box["y"] + 10)
    cpu = legend(page, "cpu")
    assert (cpu["average"], cpu["maximum"]) == ("23.4 %", "35.1 %"), cpu
    assert sorted(value for value in legend(page, "memory").values() if value.endswith("MiB")) == [
        "512 MiB", "768 MiB"]
    disk = legend(page, "disk")
    assert (disk["read"], disk["written, maximum"]) == ("23.8 KiB/s", "35.7 KiB/s"), disk
    page.mouse.move(0, 0)
    assert section.locator("[data-note=empty-hour]").is_hidden()

    buttons = section.get_by_role("group", name="Time span").get_by_role("button")
    expect(buttons).to_have_text(["Hour", "Day", "Week", "Month"])
    expected = {"day": DAY_POINTS, "week": RECENT_HALF_HOURS, "month": RECENT_HALF_HOURS + OLD_HALF_HOURS}
    for span, count in expected.items():
        button = section.get_by_role("button", name=span.capitalize())
        with page.expect_response(usage_of(span)) as answer:
            button.click()
        assert answer.value.status == 200
        expect(button).to_have_attribute("aria-pressed", "true")
        expect(section.locator("button[aria-pressed=true]")).to_have_count(1)
        wait_for_span(page, span)
        times = shown(page, "usage.columns.t")
        assert len(times) >= count, span
        assert times == sorted(times)
        assert (int(usage_vm["oldest"]) in times) == (span == "month"), span
        expect(section.locator(".usage-plot canvas")).to_have_count(4)

    # The charts follow the page's width.
    wide = shown(page, "usage.charts.cpu.width")
    page.set_viewport_size({"width": 600, "height": 900})
    page.wait_for_function("wide => window.vmportalUsage.charts.cpu.width < wide", arg=wide)
    assert shown(page, "usage.charts.cpu.width") <= page.locator("[data-chart=cpu] .usage-plot").evaluate(
        "plot => plot.clientWidth")

    assert errors == []
    assert violations.of(page) == []


def test_another_tenant_s_vm_figures_are_not_found(page: Page, live_app: LiveApp, lab_host: LabHost,
                                                  usage_vm: dict[str, str]) -> None:
    login(page, usage_vm["user"])
    other = lab_host.uuids["db-01"]
    assert page.request.get(f"/domains/{lab_host.name}/{other}/usage/?span=hour").status == 404
    assert page.request.get(f"{usage_vm['url']}usage/?span=hour").status == 200


def test_a_pushed_sample_moves_the_hour_chart_in_the_browser_s_time_zone(
    browser: Browser, live_app: LiveApp, usage_vm: dict[str, str]
) -> None:
    """The server's own partial (domains.live.usage_sample_message) swapped in as the live socket swaps it:
    its point is appended, shown in the legend at the browser's local time, and the hour's oldest drop."""
    zone = "Asia/Kathmandu"  # UTC+05:45: no other zone's clock reads the same
    context = browser.new_context(base_url=live_app.url, timezone_id=zone, viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        login(page, usage_vm["user"])
        page.goto(usage_vm["url"])
        wait_for_span(page, "hour")
        first, last = shown(page, "[usage.columns.t[0], usage.columns.t[usage.columns.t.length - 1]]")

        def push(t: float, cpu: float) -> dict[str, Any]:
            sample = {"t": t, "cpu_percent": cpu, "host_cpu_percent": cpu / 4, "memory_used_kib": MEMORY_KIB,
                      "memory_source": "allocation", "disk_read_bytes_per_second": 3 * 1024 * 1024}
            message = live_app.shell("import json, sys\nfrom domains.live import usage_sample_message\n"
                                     f"sys.stdout.write(usage_sample_message(json.loads({json.dumps(sample)!r})))")
            # Swapped and read in one turn of the page's loop: no sample the server pushes comes between.
            return page.evaluate("""message => {
                htmx.swap("#usage", message, {swapStyle: "none"});
                const usage = window.vmportalUsage, cpu = usage.charts.cpu;
                const legend = chart => Object.fromEntries(Array.from(
                    document.querySelectorAll(`[data-chart=${chart}] .u-legend tr`),
                    row => [row.querySelector(".u-label").textContent, row.querySelector(".u-value").textContent]));
                return {t: usage.columns.t.slice(), drawn: cpu.data[0][cpu.data[0].length - 1],
                        cpu: cpu.data[1][cpu.data[1].length - 1], legend: legend("cpu"),
                        memory: legend("memory"), disk: legend("disk"),
                        sources: Array.from(document.querySelectorAll("[data-memory-source]"),
                                            note => [note.dataset.memorySource, !note.hidden])};
            }""", message)

        # Ahead of the server's own samples meanwhile (those older than the newest point are not drawn).
        at = max(last, time.time()) + 30.5
        after = push(at, 77.7)
        assert after["t"][-1] == after["drawn"] == at and after["cpu"] == 77.7
        assert after["legend"]["Time"] == datetime.fromtimestamp(at, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")
        assert (after["legend"]["average"], after["legend"]["maximum"]) == ("77.7 %", "77.7 %")  # one sample
        assert after["t"][0] == first
        # The memory chart says its figure is the allocation, in the template's words and its legend's.
        assert after["sources"] == [["guest", False], ["allocation", True]]
        assert after["memory"]["allocation"] == "512 MiB"
        assert after["disk"]["read"] == "3 MiB/s"
        expect(page.locator("[data-memory-source=allocation]")).to_be_visible()

        # An hour after the third point: the first three leave the chart.
        third = shown(page, "usage.columns.t[2]")
        later = push(third + 3600 + 0.5, 12.0)
        assert later["t"][0] > third and later["t"][-1] == third + 3600 + 0.5
        assert later["legend"]["average"] == "12 %"
    finally:
        context.close()


def test_the_hour_chart_follows_the_samples_the_server_pushes(page: Page, live_app: LiveApp,
                                                             usage_vm: dict[str, str]) -> None:
    """Real samples: the host watcher samples web-01 every VMPORTAL_USAGE_INTERVAL seconds and the page's socket
    gets each; within three intervals of the page opening, the hour's newest point is newer."""
    login(page, usage_vm["user"])
    page.goto(usage_vm["url"])
    expect(page.locator("#live-indicator")).to_have_attribute("data-live", "on")
    wait_for_span(page, "hour")
    interval = shown(page, "usage.interval")
    assert interval and interval > 0, "the server takes no samples (VMPORTAL_USAGE_INTERVAL=0)"
    newest = shown(page, "usage.columns.t[usage.columns.t.length - 1]")
    page.wait_for_function("newest => { const t = window.vmportalUsage.columns.t; return t[t.length - 1] > newest; }",
                           arg=newest, timeout=(3 * interval + 5) * 1000)
    assert shown(page, "usage.charts.cpu.data[0][usage.charts.cpu.data[0].length - 1]") > newest
