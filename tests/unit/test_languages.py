"""Which language a page and a live socket speak: the user's own setting, else the language cookie, else the
browser's Accept-Language; and a pushed row is rendered once per rights and language."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import translation

from accounts.languages import socket_language
from accounts.models import User
from domains import live, virt
from domains.access import ALL_RIGHTS
from tests.conftest import client_for

LOGIN = "/accounts/login/"


def _login_language(client: Client, **headers: str) -> str:
    return client.get(LOGIN, headers=headers)["Content-Language"]


@pytest.mark.django_db
def test_the_browsers_language_is_spoken_before_sign_in():
    assert _login_language(Client(), accept_language="vi,en;q=0.5") == "vi"
    assert _login_language(Client(), accept_language="de-DE,en;q=0.5") == "en"  # one we do not speak


@pytest.mark.django_db
def test_the_chooser_sets_the_cookie_before_sign_in_and_the_account_after(tenant_user: User):
    anonymous = Client()
    chosen = anonymous.post("/accounts/language/", {"language": "vi", "next": LOGIN})
    assert (chosen.status_code, chosen["Location"]) == (302, LOGIN)
    assert _login_language(anonymous, accept_language="en") == "vi"

    signed_in = client_for(tenant_user)
    signed_in.post("/accounts/language/", {"language": "vi"}, headers={"referer": "https://evil.example/"})
    tenant_user.refresh_from_db()
    assert tenant_user.language == "vi"
    # The account's choice follows the user to another browser that asks for English.
    elsewhere = client_for(tenant_user)
    page = elsewhere.get("/domains/", headers={"accept-language": "en"})
    assert page["Content-Language"] == "vi"
    signed_in.post("/accounts/language/", {"language": ""})
    tenant_user.refresh_from_db()
    assert tenant_user.language == ""
    assert client_for(tenant_user).get("/domains/", headers={"accept-language": "en"})["Content-Language"] == "en"


@pytest.mark.django_db
def test_the_chooser_returns_to_its_page_and_sends_nobody_to_another_site(tenant_user: User):
    page = "http://testserver/domains/?all"
    assert client_for(tenant_user).post("/accounts/language/", {"language": "vi"}, headers={"referer": page}
                                        )["Location"] == page
    answer = client_for(tenant_user).post("/accounts/language/", {"language": "vi", "next": "https://evil.example/"})
    assert answer["Location"] == "/"
    answer = client_for(tenant_user).post("/accounts/language/", {"language": "vi"},
                                          headers={"referer": "https://evil.example/x"})
    assert answer["Location"] == "/"
    assert client_for(tenant_user).get("/accounts/language/").status_code == 405


def _scope(user: object = None, **headers: str) -> dict[str, object]:
    return {"user": user, "headers": [(name.replace("_", "-").encode(), value.encode())
                                      for name, value in headers.items()]}


@pytest.mark.django_db
def test_a_live_socket_speaks_its_pages_language(tenant_user: User):
    assert socket_language(_scope(accept_language="vi-VN,vi;q=0.9")) == "vi"
    assert socket_language(_scope(cookie="django_language=vi", accept_language="en")) == "vi"
    assert socket_language(_scope(accept_language="fr")) == "en"
    tenant_user.language = "vi"
    assert socket_language(_scope(tenant_user, accept_language="en")) == "vi"


def test_a_pushed_row_is_rendered_once_per_language():
    record = virt.DomainRecord(uuid="00000000-0000-4000-8000-00000000a11a", name="web", title="", persistent=True,
                               state=virt.DomainState.RUNNING, reason="", autostart=False, managed_save=False,
                               snapshots=0, vcpus=1, memory_kib=1024, id=1)
    live.render_partial.cache_clear()
    for language in ("en", "vi", "en"):
        with translation.override(language):
            live.row_message(1, "h", record, ALL_RIGHTS, False)
    assert live.render_partial.cache_info().currsize == 2


@pytest.mark.django_db
def test_the_pages_speak_vietnamese_to_whoever_asks_for_it(tenant_user: User):
    login = Client().get(LOGIN, headers={"accept-language": "vi"}).content.decode()
    assert '<html lang="vi">' in login and "<h1>Đăng nhập</h1>" in login
    tenant_user.language = "vi"
    tenant_user.save()
    page = client_for(tenant_user).get("/domains/?all").content.decode()
    assert ">Máy ảo</a>" in page and ">Đăng xuất</button>" in page
    assert '<option value="vi" lang="vi" selected>Tiếng Việt</option>' in page
    english = Client().get(LOGIN).content.decode()
    assert "<h1>Log in</h1>" in english and '<option value="en" lang="en" selected>English</option>' in english
