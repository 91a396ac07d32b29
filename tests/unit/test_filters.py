"""The domain list's query string: virsh list's flags, host=, q=, output modes, htmx partial and JSON."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.http import QueryDict

from accounts.models import User
from domains.filters import ListQueryError, parse_list_query
from domains.models import Host
from tests.conftest import TEST_DOMAIN_UUID, client_for

DOMAIN_KEYS = {"host", "name", "uuid", "state", "reason", "persistent", "autostart", "managed_save",
               "snapshots", "vcpus", "memory_kib", "title", "addresses", "address_source", "cpu_percent",
               "memory_used_kib"}

WEB = "aaaaaaaa-0000-0000-0000-000000000001"
DB = "aaaaaaaa-0000-0000-0000-000000000002"
MAIL = "aaaaaaaa-0000-0000-0000-000000000003"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def office(xml_host: Callable[..., Host]) -> Host:
    return xml_host("office", [
        {"name": "web-frontend", "uuid": WEB, "title": "Public Shop"},
        {"name": "db-main", "uuid": DB, "title": "Orders DATABASE"},
        {"name": "mail", "uuid": MAIL},
    ])


def listed(user: User, **params: str) -> list[tuple[str, str]]:
    response = client_for(user).get("/domains/", {"format": "json", **params})
    assert response.status_code == 200, response.content
    return [(row["host"], row["name"]) for row in response.json()["domains"]]


# --- parse_list_query ---


@pytest.mark.parametrize("query", ["all", "all=", "all=0", "all=false", "all=no", "all=1"])
def test_a_flag_counts_when_present_whatever_its_value(query: str):
    assert parse_list_query(QueryDict(query)).options == {"all"}


def test_flags_absent_mean_virsh_list_without_options():
    query = parse_list_query(QueryDict(""))
    assert query.options == frozenset()
    assert (query.host, query.text, query.json, query.table, query.show_titles) == ("", "", False, True, False)


def test_every_virsh_option_is_understood():
    query = parse_list_query(QueryDict("inactive&with-managed-save&state-paused&no-autostart"))
    assert query.options == {"inactive", "with-managed-save", "state-paused", "no-autostart"}


def test_an_unknown_option_is_refused_like_virsh_does_rather_than_ignored():
    with pytest.raises(ListQueryError, match="Unknown option: runing."):
        parse_list_query(QueryDict("state-running&runing"))


def test_host_and_q_are_trimmed():
    query = parse_list_query(QueryDict("host=%20lab1%20&q=%20Web%20"))
    assert (query.host, query.text) == ("lab1", "Web")


@pytest.mark.parametrize(
    ("query", "table", "titles"),
    [("name", False, False), ("uuid", False, False), ("name&uuid", False, False), ("title", True, True),
     ("name&title", False, True), ("table&title", True, True)],
)
def test_output_modes(query: str, table: bool, titles: bool):
    parsed = parse_list_query(QueryDict(query))
    assert (parsed.table, parsed.show_titles) == (table, titles)


@pytest.mark.parametrize("query", ["table&name", "table&uuid", "table=0&name=0"])
def test_table_with_name_or_uuid_is_an_error(query: str):
    with pytest.raises(ListQueryError, match="Only one of table, name and uuid"):
        parse_list_query(QueryDict(query))


@pytest.mark.parametrize("value", ["xml", "JSON", "csv", ""])
def test_an_unknown_format_is_an_error(value: str):
    with pytest.raises(ListQueryError, match="format must be html or json"):
        parse_list_query(QueryDict(f"format={value}"))


# --- What the page answers ---


def test_table_with_name_is_a_400_page_that_says_why(admin_user: User, embedded_host: Host):
    response = client_for(admin_user).get("/domains/?table&name")
    assert response.status_code == 400
    body = response.content.decode()
    assert "<html" in body
    assert "Only one of table, name and uuid may be given" in body
    assert 'data-name="test"' not in body


def test_table_with_name_in_json_is_a_400_json_error(admin_user: User, embedded_host: Host):
    response = client_for(admin_user).get("/domains/?table&name&format=json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": "Only one of table, name and uuid may be given (name and uuid may go together)."}


def test_an_unknown_format_is_a_400_page(admin_user: User, embedded_host: Host):
    response = client_for(admin_user).get("/domains/?all&format=xml")
    assert response.status_code == 400
    assert "format must be html or json." in response.content.decode()


def test_q_matches_the_name_case_insensitively(admin_user: User, office: Host):
    assert listed(admin_user, q="WEB") == [("office", "web-frontend")]
    assert listed(admin_user, q="db-") == [("office", "db-main")]


def test_q_matches_the_title_case_insensitively(admin_user: User, office: Host):
    assert listed(admin_user, q="shop") == [("office", "web-frontend")]
    assert listed(admin_user, q="database") == [("office", "db-main")]


def test_q_that_matches_nothing_lists_nothing(admin_user: User, office: Host):
    assert listed(admin_user, q="nothing-like-this") == []
    page = client_for(admin_user).get("/domains/", {"q": "nothing-like-this"}).content.decode()
    assert "No virtual machine matches these options." in page
    assert 'value="nothing-like-this"' in page  # the search box keeps what was typed


def test_host_restricts_the_list_to_that_host(admin_user: User, embedded_host: Host, office: Host):
    assert listed(admin_user) == [("embedded", "test"), ("office", "db-main"), ("office", "mail"),
                                  ("office", "web-frontend")]
    assert listed(admin_user, host="embedded") == [("embedded", "test")]
    assert [name for _host, name in listed(admin_user, host="office")] == ["db-main", "mail", "web-frontend"]
    assert listed(admin_user, host="nosuch") == []


def test_host_and_q_combine(admin_user: User, embedded_host: Host, office: Host):
    assert listed(admin_user, host="embedded", q="web") == []
    assert listed(admin_user, host="office", q="MAIL") == [("office", "mail")]


def test_without_all_or_inactive_only_running_vms_are_listed(admin_user: User, embedded_host: Host):
    assert listed(admin_user) == [("embedded", "test")]
    assert listed(admin_user, inactive="") == []
    assert listed(admin_user, **{"state-running": ""}) == [("embedded", "test")]


def test_name_and_uuid_outputs_are_plain_lists(admin_user: User, embedded_host: Host):
    body = client_for(admin_user).get("/domains/?name&uuid").content.decode()
    assert '<ul class="plain-list">' in body
    assert f"<code>{TEST_DOMAIN_UUID}</code> test" in body
    assert '<table class="domains">' not in body


def test_htmx_gets_only_the_results_partial(admin_user: User, embedded_host: Host):
    response = client_for(admin_user).get("/domains/", {"all": ""}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode().strip()
    assert body.startswith('<div id="results" data-live-since="')  # when its data was read, for the socket
    assert "<html" not in body and 'id="filters"' not in body
    assert 'data-name="test"' in body


def test_a_normal_request_gets_the_whole_page(admin_user: User, embedded_host: Host):
    body = client_for(admin_user).get("/domains/", {"all": ""}).content.decode()
    assert "<html" in body
    assert 'id="filters"' in body
    assert '<div id="results" data-live-since="' in body
    assert 'data-name="test"' in body
    assert 'name="all" checked' in body  # the form shows the options in force


def test_json_has_exactly_the_documented_keys(admin_user: User, embedded_host: Host, office: Host):
    payload = client_for(admin_user).get("/domains/", {"all": "", "format": "json"}).json()
    assert set(payload) == {"count", "page", "pages", "per_page", "domains", "hosts", "unreachable_hosts"}
    assert (payload["count"], payload["page"], payload["pages"], payload["per_page"]) == (4, 1, 1, 50)
    assert payload["unreachable_hosts"] == []
    # Neither host has a watcher in this test: both are read for the request (and the watchers asked to take them).
    assert payload["hosts"] == [{"host": "embedded", "watched": False, "listed_at": None},
                                {"host": "office", "watched": False, "listed_at": None}]
    assert len(payload["domains"]) == 4
    for row in payload["domains"]:
        assert set(row) == DOMAIN_KEYS
    test_vm = next(row for row in payload["domains"] if row["uuid"] == TEST_DOMAIN_UUID)
    assert test_vm["host"] == "embedded"
    assert test_vm["name"] == "test"
    assert test_vm["state"] == "running"
    assert test_vm["title"] == "" and test_vm["addresses"] == []  # no agent on the test driver
    web = next(row for row in payload["domains"] if row["uuid"] == WEB)
    assert (web["host"], web["title"], web["vcpus"], web["memory_kib"]) == ("office", "Public Shop", 1, 65536)
