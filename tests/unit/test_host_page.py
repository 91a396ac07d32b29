"""The host page (issue 14): capacity, versions, VMs, charts and top consumers, for admins and operators only;
and its charts' JSON, the host's own figures."""

from __future__ import annotations

import time
from html.parser import HTMLParser

import libvirt
import pytest
from django.urls import reverse

from accounts.models import User
from domains import history
from domains.models import Grant, Host, HostUsage
from tests.conftest import TEST_DOMAIN_UUID, client_for

OTHER_UUID = "00000000-0000-0000-0000-0000000000aa"
BIG_UUID = "00000000-0000-0000-0000-0000000000cc"


def page_url(host: str = "embedded") -> str:
    return reverse("domains:host", kwargs={"host_name": host})


def usage_url(host: str = "embedded") -> str:
    return reverse("domains:host-usage", kwargs={"host_name": host})


def bucket(at: float, resolution: int) -> int:
    return int(at) // resolution * resolution


def seed(host: Host, start: int, base: float, uuid: str | None = None, resolution: int = 10) -> None:
    """One point (the host's own by default) whose every figure's average is `base` + its place, maximum twice that."""
    average = {name: base + index for index, name in enumerate(history.FIGURES)}
    history.save([history.Point(host.pk, uuid or history.HOST, resolution, start, 1, average,
                                {name: 2 * value for name, value in average.items()})])


def figures(name: str, cpu: float, memory_kib: float, source: str = "guest") -> dict[str, object]:
    return dict.fromkeys(history.FIGURES, 0.0) | {"name": name, "cpu_percent": cpu, "host_cpu_percent": cpu / 4,
                                                  "memory_used_kib": memory_kib, "memory_source": source,
                                                  "trend": [cpu]}


def sample(host: Host, *, free_kib: int | None = 2 * 1024 * 1024, host_source: str = "host",
           taken_at: float | None = None) -> None:
    """The host's latest usage sample: three VMs (the "test" VM among them) and the host's own figures."""
    host_figures = dict.fromkeys(history.FIGURES, 0.0) | {"cpu_percent": 40.26, "memory_used_kib": 1536 * 1024,
                                                          "memory_source": host_source}
    HostUsage.objects.create(
        host=host, taken_at=time.time() if taken_at is None else taken_at,
        counters={"memory_free_kib": free_kib, "memory_total_kib": 3072 * 1024, "domains": {}},
        rates={TEST_DOMAIN_UUID: figures("test", 10.0, 900 * 1024),
               OTHER_UUID: figures("busy", 90.04, 512 * 1024, source="allocation"),
               BIG_UUID: figures("big<b>", 50.0, 5 * 1024 * 1024),
               history.HOST: host_figures})


def _test_driver() -> tuple[str, int, int, str]:
    """What test:///default says of itself, asked of libvirt directly: libvirt's version, CPUs, MiB, its type."""
    conn = libvirt.open("test:///default")
    try:
        number = conn.getLibVersion()
        _model, memory_mib, cpus, *_ = conn.getInfo()
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}", cpus, memory_mib, conn.getType()
    finally:
        conn.close()


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.elements


def links(html: str) -> list[str]:
    return [attrs["href"] or "" for tag, attrs in elements(html) if tag == "a" and attrs.get("href")]


# --- Who sees it ---


@pytest.mark.parametrize("role", ["admin_user", "operator_user"])
def test_admins_and_operators_see_the_host_s_capacity_versions_pools_and_vms(role: str, embedded_host: Host,
                                                                             request: pytest.FixtureRequest):
    user: User = request.getfixturevalue(role)
    answer = client_for(user).get(page_url())
    assert answer.status_code == 200
    html = answer.content.decode()
    libvirt_version, cpus, memory_mib, hypervisor = _test_driver()
    assert "<h1>embedded <small>host</small></h1>" in html
    assert f"<dt>CPUs</dt><dd>{cpus} " in html
    assert f"<dt>Memory</dt><dd>{memory_mib // 1024} GiB</dd>" in html  # 3,072 MiB
    assert f"<dt>libvirt</dt><dd>{libvirt_version}</dd>" in html
    assert f"<dt>Hypervisor</dt><dd>{hypervisor} 0.0.2</dd>" in html  # the test driver's own version
    # test:///default's one pool, started, 100 GiB all free.
    assert ('<tr data-pool="default-pool"><td>default-pool</td>\n        <td>active</td><td>100 GiB</td>'
            '<td>100 GiB</td><td>0 B</td>') in html
    # test:///default defines one VM, running; the list of them is one link away.
    assert "<strong>1</strong> VM, <strong>1</strong> running." in html
    assert "/domains/?all&host=embedded" in links(html)
    assert "does not answer" not in html


def test_admins_see_the_uri_and_the_edit_and_test_buttons_operators_do_not(admin_user: User, operator_user: User,
                                                                           embedded_host: Host):
    admin = client_for(admin_user).get(page_url()).content.decode()
    operator = client_for(operator_user).get(page_url()).content.decode()
    edit = reverse("domains:host-edit", kwargs={"host_name": "embedded"})
    test = reverse("domains:host-test", kwargs={"host_name": "embedded"})
    assert "<code>test:///default</code>" in admin and edit in links(admin) and f'hx-post="{test}"' in admin
    assert "test:///default" not in operator
    assert edit not in operator and test not in operator


@pytest.mark.parametrize("role", ["tenant_user", "other_tenant_user"])
def test_a_tenant_gets_the_same_404_as_for_a_host_that_does_not_exist(role: str, tenant_grant: Grant,
                                                                      request: pytest.FixtureRequest):
    client = client_for(request.getfixturevalue(role))
    existing, missing = client.get(page_url()), client.get(page_url("nowhere"))
    assert existing.status_code == missing.status_code == 404
    assert "embedded" not in existing.content.decode()
    # Even the granted tenant, whose VM runs there: the host's figures are not a tenant's.
    assert client.get(usage_url()).status_code == client.get(usage_url("nowhere")).status_code == 404


def test_an_unknown_or_disabled_host_is_404_for_admins_too(admin_user: User, embedded_host: Host):
    client = client_for(admin_user)
    assert client.get(page_url("nowhere")).status_code == 404
    assert client.get(usage_url("nowhere")).status_code == 404
    Host.objects.filter(pk=embedded_host.pk).update(enabled=False)
    assert client.get(page_url()).status_code == 404
    assert client.get(usage_url()).status_code == 404


def test_anonymous_is_sent_to_log_in_and_a_post_is_refused(admin_user: User, embedded_host: Host):
    for url in (page_url(), usage_url()):
        answer = client_for(None).get(url)
        assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")
        assert client_for(admin_user).post(url).status_code == 405


# --- The latest sample: free memory, the host's own figures, the top consumers ---


def test_the_latest_sample_gives_free_memory_the_host_s_figures_and_its_top_consumers(operator_user: User,
                                                                                      embedded_host: Host):
    sample(embedded_host)
    html = client_for(operator_user).get(page_url()).content.decode()
    assert "<dt>Free memory</dt><dd>2 GiB</dd>" in html
    assert "<dt>CPU busy</dt><dd>40.3 % <small" in html  # one decimal
    assert "<dt>Memory used</dt><dd>1.5 GiB <small class=\"muted\">by the host</small>" in html

    top = html[html.index('id="top-consumers"'):]
    by_cpu = top[top.index('data-top="cpu"'):top.index('data-top="memory"')]
    by_memory = top[top.index('data-top="memory"'):]
    vm = "/domains/embedded/{}/"
    assert links(by_cpu) == [vm.format(OTHER_UUID), vm.format(BIG_UUID), vm.format(TEST_DOMAIN_UUID)]
    assert links(by_memory) == [vm.format(BIG_UUID), vm.format(TEST_DOMAIN_UUID),
                                                  vm.format(OTHER_UUID)]
    assert "<td>22.5 % <small class=\"muted\">of the host, 90.0 % of its vCPUs</small></td>" in by_cpu
    assert "<td>2.5 % <small class=\"muted\">of the host, 10.0 % of its vCPUs</small></td>" in by_cpu
    assert '<td>5 GiB <small class="muted">guest</small></td>' in by_memory
    assert '<td>900 MiB <small class="muted">guest</small></td>' in by_memory
    assert '<td>512 MiB <small class="muted">allocation</small></td>' in by_memory
    assert "big&lt;b&gt;" in top and "big<b>" not in top  # a guest-controlled name is escaped


def test_a_host_that_does_not_tell_its_free_memory_says_so(admin_user: User, embedded_host: Host):
    sample(embedded_host, free_kib=None, host_source="domains")  # as the test driver's samples are
    html = client_for(admin_user).get(page_url()).content.decode()
    assert "<dt>Free memory</dt><dd><span class=\"muted\">the host does not report it</span></dd>" in html
    assert "by its VMs (the host does not report its free memory)" in html


def test_before_any_sample_the_page_says_so(admin_user: User, embedded_host: Host):
    html = client_for(admin_user).get(page_url()).content.decode()
    assert "<dt>Free memory</dt><dd><span class=\"muted\">not sampled yet</span></dd>" in html
    assert "No usage sample of its VMs yet." in html


# --- A host that does not answer ---


@pytest.mark.parametrize("role", ["admin_user", "operator_user"])
def test_a_host_that_does_not_answer_still_has_its_page_with_what_was_kept(role: str, closed_loopback_uri: str,
                                                                           request: pytest.FixtureRequest):
    user: User = request.getfixturevalue(role)
    host = Host.objects.create(name="silent", uri=closed_loopback_uri)
    sample(host)
    answer = client_for(user).get(page_url("silent"))
    assert answer.status_code == 200
    html = answer.content.decode()
    assert "Host silent does not answer:" in html
    assert "<dt>CPUs</dt><dd><span class=\"muted\">unknown</span></dd>" in html
    [section] = [attrs for tag, attrs in elements(html) if attrs.get("id") == "usage"]
    assert section["data-url"] == usage_url("silent")
    assert f"/domains/silent/{OTHER_UUID}/" in links(html)  # the top consumers, from the last sample
    assert "<dt>Free memory</dt><dd>2 GiB</dd>" in html
    # Operators read the reason without the host's address; admins read libvirt's own words.
    address = closed_loopback_uri.removeprefix("qemu+tcp://").removesuffix("/system")
    assert (address in html) == (role == "admin_user")


def test_a_host_that_hangs_is_given_up_on_after_the_host_deadline(admin_user: User, db: None,
                                                                 silent_loopback_uri: str, settings):
    settings.HOST_DEADLINE_SECONDS = 0.5
    Host.objects.create(name="hung", uri=silent_loopback_uri)
    started = time.monotonic()
    answer = client_for(admin_user).get(page_url("hung"))
    assert time.monotonic() - started < 5
    assert answer.status_code == 200
    assert "Host hung does not answer: The host did not answer in time." in answer.content.decode()


# --- The charts ---


def test_the_host_page_s_charts_read_the_host_s_usage_and_are_labelled_for_a_host(operator_user: User,
                                                                                  embedded_host: Host):
    html = client_for(operator_user).get(page_url()).content.decode()
    [section] = [attrs for tag, attrs in elements(html) if attrs.get("id") == "usage"]
    assert section["data-url"] == usage_url()
    assert "data-pushed" not in section  # no live pushes here: the hour is fetched again each interval
    charts = [attrs["data-chart"] for tag, attrs in elements(html) if "data-chart" in attrs]
    assert charts == ["cpu", "memory", "disk", "network"]
    assert "% of the host's CPUs: average and maximum" in html
    sources = {attrs["data-memory-source"]: attrs["data-legend"] for tag, attrs in elements(html)
               if "data-memory-source" in attrs}
    assert sources == {"host": "used by the host", "domains": "used by its VMs"}
    scripts = [attrs["src"] for tag, attrs in elements(html) if tag == "script" and attrs.get("src")]
    assert "/static/vmportal/usage.js" in scripts
    assert not [attrs for tag, attrs in elements(html) if tag == "script" and not attrs.get("src")]
    assert not [attrs for tag, attrs in elements(html) if "style" in attrs or tag == "style"]


def test_the_vm_page_s_charts_still_follow_the_live_socket(tenant_user: User, tenant_grant: Grant):
    html = client_for(tenant_user).get(reverse("domains:detail", kwargs={"host_name": "embedded",
                                                                         "uuid": TEST_DOMAIN_UUID})).content.decode()
    [section] = [attrs for tag, attrs in elements(html) if attrs.get("id") == "usage"]
    assert "data-pushed" in section
    assert "% of its vCPUs: average and maximum" in html
    sources = {attrs["data-memory-source"]: attrs["data-legend"] for tag, attrs in elements(html)
               if "data-memory-source" in attrs}
    assert sources == {"guest": "used (guest)", "allocation": "allocation"}


@pytest.mark.parametrize("role", ["admin_user", "operator_user"])
def test_the_host_s_usage_is_its_own_points_not_its_vms(role: str, embedded_host: Host,
                                                        request: pytest.FixtureRequest):
    now = time.time()
    start = bucket(now, 60) - 60
    seed(embedded_host, start, 7.0, resolution=60)  # the host's own
    seed(embedded_host, start - 60, 1.0, uuid=TEST_DOMAIN_UUID, resolution=60)  # a VM's
    seed(embedded_host, start - 120, 2.0, uuid=OTHER_UUID, resolution=60)
    answer = client_for(request.getfixturevalue(role)).get(usage_url(), {"span": "day"})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["span"], body["resolution"]) == ("day", 60)
    series = body["series"]
    assert set(series) == {"t", *history.FIGURES, *(f"{name}_max" for name in history.FIGURES)}
    assert (series["t"], series["cpu_percent"], series["cpu_percent_max"]) == ([start], [7.0], [14.0])


def test_the_host_s_hour_ends_with_its_latest_sample_and_its_memory_source(admin_user: User, embedded_host: Host,
                                                                           settings):
    settings.USAGE_INTERVAL_SECONDS = 7.0
    now = time.time()
    closed = bucket(now, 10) - 20
    seed(embedded_host, closed, 5.0)
    sample(embedded_host, host_source="domains", taken_at=now)
    body = client_for(admin_user).get(usage_url()).json()  # no span: the hour
    assert (body["span"], body["interval"], body["memory_source"]) == ("hour", 7.0, "domains")
    assert (body["series"]["t"], body["series"]["cpu_percent"]) == ([closed, now], [5.0, 40.26])


def test_a_span_that_is_not_offered_is_a_400_for_those_who_may_see_the_host(admin_user: User, tenant_user: User,
                                                                            tenant_grant: Grant):
    answer = client_for(admin_user).get(usage_url(), {"span": "year"})
    assert answer.status_code == 400
    assert answer.json() == {"error": "Unknown span: choose one of hour, day, week, month."}
    assert client_for(tenant_user).get(usage_url(), {"span": "year"}).status_code == 404  # the gate answers first


def test_the_host_s_figures_come_from_the_database_even_when_it_does_not_answer(admin_user: User, db: None,
                                                                               closed_loopback_uri: str):
    host = Host.objects.create(name="silent", uri=closed_loopback_uri)
    start = bucket(time.time(), 10) - 10
    seed(host, start, 3.0)
    answer = client_for(admin_user).get(usage_url("silent"))
    assert answer.status_code == 200
    assert answer.json()["series"]["t"] == [start]


# --- Links to it ---


def test_the_hosts_page_links_each_enabled_host_to_its_page(admin_user: User, embedded_host: Host):
    Host.objects.create(name="parked", uri="test:///default", enabled=False)
    html = client_for(admin_user).get(reverse("domains:hosts")).content.decode()
    assert page_url() in links(html)
    assert page_url("parked") not in links(html)  # a disabled host has no page
