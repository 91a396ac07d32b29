"""The VM page's usage charts: the JSON of each span (domains:usage), its gate, and the page's section."""

from __future__ import annotations

import json
import time
from html.parser import HTMLParser

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import User
from domains import history, live, selectors
from domains.models import Grant, Host, HostUsage
from tests.conftest import TEST_DOMAIN_UUID, client_for

OTHER_UUID = "00000000-0000-0000-0000-0000000000aa"
SPANS = {"hour": (10, 3600), "day": (60, 86400), "week": (1800, 7 * 86400), "month": (1800, 30 * 86400)}


def seed(host: Host, start: int, resolution: int, base: float, uuid: str | None = TEST_DOMAIN_UUID) -> None:
    """One point whose every figure's average is `base` (+ its place among the figures), maximum twice that."""
    average = {name: base + index for index, name in enumerate(history.FIGURES)}
    history.save([history.Point(host.pk, uuid or history.HOST, resolution, start, 1, average,
                                {name: 2 * value for name, value in average.items()})])


def usage_url(uuid: str = TEST_DOMAIN_UUID, host: str = "embedded") -> str:
    return reverse("domains:usage", kwargs={"host_name": host, "uuid": uuid})


def bucket(at: float, resolution: int) -> int:
    return int(at) // resolution * resolution


@pytest.mark.parametrize("span", list(SPANS))
def test_each_span_answers_its_resolution_s_points_within_it_in_time_order(span: str, admin_user: User,
                                                                          embedded_host: Host):
    resolution, seconds = SPANS[span]
    now = time.time()
    newest, older = bucket(now, resolution) - resolution, bucket(now, resolution) - 5 * resolution
    seed(embedded_host, newest, resolution, 20.0)  # written first, answered last
    seed(embedded_host, older, resolution, 10.0)
    seed(embedded_host, bucket(now - seconds, resolution) - resolution, resolution, 99.0)  # before the span
    for other in {10, 60, 1800} - {resolution}:  # the other resolutions' points are not this span's
        seed(embedded_host, bucket(now, other) - other, other, 55.0)

    answer = client_for(admin_user).get(usage_url(), {"span": span})

    assert answer.status_code == 200
    body = answer.json()
    assert (body["span"], body["resolution"]) == (span, resolution)
    series = body["series"]
    assert series["t"] == [older, newest]
    assert series["cpu_percent"] == [10.0, 20.0]
    assert series["cpu_percent_max"] == [20.0, 40.0]


def test_a_week_leaves_out_the_half_hours_a_month_keeps(admin_user: User, embedded_host: Host):
    now = time.time()
    eight_days_ago = bucket(now - 8 * 86400, 1800)
    seed(embedded_host, eight_days_ago, 1800, 1.0)
    client = client_for(admin_user)
    assert client.get(usage_url(), {"span": "week"}).json()["series"]["t"] == []
    assert client.get(usage_url(), {"span": "month"}).json()["series"]["t"] == [eight_days_ago]


def test_every_figure_has_its_average_and_maximum_column(admin_user: User, embedded_host: Host):
    start = bucket(time.time(), 10) - 10
    seed(embedded_host, start, 10, 100.0)
    series = client_for(admin_user).get(usage_url(), {"span": "hour"}).json()["series"]
    assert set(series) == {"t", *history.FIGURES, *(f"{name}_max" for name in history.FIGURES)}
    for index, name in enumerate(history.FIGURES):
        assert series[name] == [100.0 + index], name
        assert series[f"{name}_max"] == [2 * (100.0 + index)], name
    assert series["memory_used_kib"] == [100.0 + history.FIGURES.index("memory_used_kib")]


def test_a_vm_s_series_holds_neither_other_vms_nor_its_host_s_own_figures(admin_user: User, embedded_host: Host):
    start = bucket(time.time(), 10) - 10
    seed(embedded_host, start, 10, 1.0)
    seed(embedded_host, start - 10, 10, 2.0, uuid=OTHER_UUID)
    seed(embedded_host, start - 20, 10, 3.0, uuid=None)  # the host's own
    series = client_for(admin_user).get(usage_url(), {"span": "hour"}).json()["series"]
    assert (series["t"], series["cpu_percent"]) == ([start], [1.0])


def test_without_any_point_the_series_are_empty_and_the_sampling_interval_is_told(admin_user: User,
                                                                                embedded_host: Host, settings):
    settings.USAGE_INTERVAL_SECONDS = 7.0
    body = client_for(admin_user).get(usage_url()).json()  # no span: the hour
    assert (body["span"], body["resolution"], body["interval"], body["memory_source"]) == ("hour", 10, 7.0, None)
    assert body["series"]["t"] == [] and body["series"]["cpu_percent_max"] == []


@pytest.mark.parametrize("source", ["guest", "allocation"])
def test_the_memory_source_is_the_latest_sample_s(source: str, admin_user: User, embedded_host: Host):
    HostUsage.objects.create(host=embedded_host, taken_at=time.time(), counters={}, rates={
        TEST_DOMAIN_UUID: {"cpu_percent": 1.0, "memory_source": source},
        OTHER_UUID: {"cpu_percent": 1.0, "memory_source": "allocation" if source == "guest" else "guest"},
    })
    assert client_for(admin_user).get(usage_url()).json()["memory_source"] == source
    assert client_for(admin_user).get(usage_url(uuid="00000000-0000-0000-0000-0000000000bb")).json()[
        "memory_source"] is None  # no figures of that VM in the sample


def test_the_hour_ends_with_the_latest_sample_when_its_bucket_is_still_open(admin_user: User, embedded_host: Host):
    now = time.time()
    closed = bucket(now, 10) - 20
    seed(embedded_host, closed, 10, 5.0)
    seed(embedded_host, bucket(now, 60) - 60, 60, 5.0)
    figures = dict.fromkeys(history.FIGURES, 77.0) | {"memory_source": "guest"}
    HostUsage.objects.create(host=embedded_host, taken_at=now, counters={}, rates={TEST_DOMAIN_UUID: figures})
    hour = client_for(admin_user).get(usage_url()).json()["series"]
    assert (hour["t"], hour["cpu_percent"], hour["cpu_percent_max"]) == ([closed, now], [5.0, 77.0], [10.0, 77.0])
    day = client_for(admin_user).get(usage_url(), {"span": "day"}).json()["series"]
    assert 77.0 not in day["cpu_percent"]  # the longer spans keep to their closed points
    HostUsage.objects.filter(host=embedded_host).update(taken_at=closed + 5)  # inside the last point's bucket
    assert client_for(admin_user).get(usage_url()).json()["series"]["t"] == [closed]


@pytest.mark.parametrize("span", ["year", "", "HOUR", "hour;day"])
def test_a_span_that_is_not_offered_is_a_400_that_names_those_that_are(span: str, admin_user: User,
                                                                       embedded_host: Host):
    answer = client_for(admin_user).get(usage_url(), {"span": span})
    assert answer.status_code == 400
    assert answer.json() == {"error": "Unknown span: choose one of hour, day, week, month."}


def test_a_tenant_with_a_grant_reads_its_vm_s_figures(tenant_user: User, tenant_grant: Grant, embedded_host: Host):
    start = bucket(time.time(), 60) - 60
    seed(embedded_host, start, 60, 42.0)
    answer = client_for(tenant_user).get(usage_url(), {"span": "day"})
    assert answer.status_code == 200
    assert answer.json()["series"]["cpu_percent"] == [42.0]


def test_another_tenant_gets_the_same_404_as_for_a_vm_that_does_not_exist(other_tenant_user: User,
                                                                           tenant_grant: Grant, embedded_host: Host):
    seed(embedded_host, bucket(time.time(), 10) - 10, 10, 42.0)
    client = client_for(other_tenant_user)
    granted = client.get(usage_url(), {"span": "hour"})
    missing = client.get(usage_url(uuid=OTHER_UUID), {"span": "hour"})
    assert granted.status_code == missing.status_code == 404
    assert TEST_DOMAIN_UUID not in granted.content.decode()
    # A bad span tells the other tenant nothing either: the gate answers first.
    assert client.get(usage_url(), {"span": "year"}).status_code == 404


def test_a_tenant_s_vm_it_has_no_grant_on_and_an_unknown_host_are_404(tenant_user: User, admin_user: User,
                                                                     tenant_grant: Grant):
    assert client_for(tenant_user).get(usage_url(uuid=OTHER_UUID)).status_code == 404
    assert client_for(admin_user).get(usage_url(host="nowhere")).status_code == 404


def test_a_disabled_host_s_vm_is_404(tenant_user: User, tenant_grant: Grant, embedded_host: Host):
    Host.objects.filter(pk=embedded_host.pk).update(enabled=False)
    assert client_for(tenant_user).get(usage_url()).status_code == 404


def test_anonymous_is_sent_to_log_in_and_a_post_is_refused(admin_user: User, embedded_host: Host):
    answer = client_for(None).get(usage_url())
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")
    assert client_for(admin_user).post(usage_url()).status_code == 405


def test_the_figures_come_from_the_database_alone_even_when_the_host_does_not_answer(
        admin_user: User, db: None, closed_loopback_uri: str):
    host = Host.objects.create(name="silent", uri=closed_loopback_uri)
    start = bucket(time.time(), 10) - 10
    seed(host, start, 10, 3.0)
    answer = client_for(admin_user).get(usage_url(host="silent"), {"span": "hour"})
    assert answer.status_code == 200
    assert answer.json()["series"]["t"] == [start]


def test_the_points_are_one_query_however_many_there_are(admin_user: User, embedded_host: Host):
    now = time.time()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            selectors.usage_series(user=admin_user, host_name="embedded", uuid=TEST_DOMAIN_UUID, span="hour")
        return len(captured)

    seed(embedded_host, bucket(now, 10) - 10, 10, 1.0)
    few = queries()
    for step in range(2, 200):
        seed(embedded_host, bucket(now, 10) - 10 * step, 10, 1.0)
    assert queries() == few
    assert len(selectors.usage_series(user=admin_user, host_name="embedded", uuid=TEST_DOMAIN_UUID,
                                      span="hour").columns["t"]) == 199


def test_every_span_s_resolution_is_kept_at_least_as_long_as_the_span():
    kept = {resolution.seconds: resolution.kept_seconds for resolution in history.RESOLUTIONS}
    assert selectors.USAGE_SPANS == SPANS
    for resolution, seconds in selectors.USAGE_SPANS.values():
        assert kept[resolution] >= seconds


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Attributes()
    parser.feed(html)
    return parser.elements


def test_the_vm_page_has_the_usage_section_with_its_span_buttons_charts_and_scripts(tenant_user: User,
                                                                                   tenant_grant: Grant):
    page = client_for(tenant_user).get(reverse("domains:detail", kwargs={"host_name": "embedded",
                                                                         "uuid": TEST_DOMAIN_UUID}))
    assert page.status_code == 200
    html = page.content.decode()
    elements = _elements(html)
    [section] = [attrs for tag, attrs in elements if attrs.get("id") == "usage"]
    assert section["data-url"] == usage_url()
    buttons = [(attrs["data-span"], attrs["aria-pressed"]) for tag, attrs in elements
               if tag == "button" and "data-span" in attrs]
    assert buttons == [("hour", "true"), ("day", "false"), ("week", "false"), ("month", "false")]
    assert all(attrs.get("type") == "button" for tag, attrs in elements if tag == "button" and "data-span" in attrs)
    charts = [attrs["data-chart"] for tag, attrs in elements if "data-chart" in attrs]
    assert charts == ["cpu", "memory", "disk", "network"]
    plots = [attrs for tag, attrs in elements if "usage-plot" in (attrs.get("class") or "")]
    assert len(plots) == 4 and all(attrs["role"] == "img" and attrs["aria-labelledby"] for attrs in plots)
    assert "Usage is sampled every" in html and "the first figures appear after two samples." in html
    scripts = [attrs["src"] for tag, attrs in elements if tag == "script" and attrs.get("src")]
    assert "/static/uplot/dist/uPlot.iife.min.js" in scripts and "/static/vmportal/usage.js" in scripts
    assert scripts.index("/static/uplot/dist/uPlot.iife.min.js") < scripts.index("/static/vmportal/usage.js")
    styles = [attrs["href"] for tag, attrs in elements if tag == "link" and attrs.get("rel") == "stylesheet"]
    assert "/static/uplot/dist/uPlot.min.css" in styles
    # The Content-Security-Policy allows no inline script or style: the section has none.
    assert not [attrs for tag, attrs in elements if tag == "script" and not attrs.get("src")]
    assert not [attrs for tag, attrs in elements if "style" in attrs or tag == "style"]


def test_a_pushed_sample_is_an_out_of_band_usage_swap_carrying_the_sample_as_json():
    sample = {"t": 1_800_000_000.5, "cpu_percent": 12.5, "memory_source": "guest", "note": "<b>&\"'"}
    [(tag, attrs)] = _elements(live.usage_sample_message(sample))
    assert attrs["hx-swap-oob"] == "usage:#usage"
    assert json.loads(attrs["data-sample"] or "") == sample


def test_the_top_consumers_are_the_latest_sample_s_and_a_tenant_sees_only_its_own(
        admin_user: User, tenant_user: User, tenant_grant: Grant, embedded_host: Host):
    def figures(name: str, cpu: float, memory: float) -> dict[str, object]:
        return dict.fromkeys(history.FIGURES, 0.0) | {"name": name, "cpu_percent": cpu, "host_cpu_percent": cpu / 2,
                                                      "memory_used_kib": memory, "memory_source": "guest",
                                                      "trend": [cpu]}

    HostUsage.objects.create(host=embedded_host, taken_at=time.time(), counters={}, rates={
        TEST_DOMAIN_UUID: figures("test", 10.0, 900.0), OTHER_UUID: figures("busy", 90.0, 100.0),
        "00000000-0000-0000-0000-0000000000cc": figures("big", 50.0, 5000.0),
        history.HOST: figures("", 40.0, 6000.0)})
    every = selectors.top_consumers(user=admin_user, hosts=[embedded_host], count=2)
    assert [consumer.name for consumer in every.cpu] == ["busy", "big"]
    assert [consumer.name for consumer in every.memory] == ["big", "test"]
    own = selectors.top_consumers(user=tenant_user, hosts=[embedded_host])
    assert [consumer.uuid for consumer in own.cpu] == [consumer.uuid for consumer in own.memory] == [TEST_DOMAIN_UUID]
