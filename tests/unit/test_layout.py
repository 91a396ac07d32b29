"""The layout's structure that keyboard and screen-reader users rely on: a skip link to the content, a labelled
navigation, a row menu that names its VM, and long audit values shortened with the whole value in a title."""

from __future__ import annotations

import re
from html import unescape

from django.test import Client

from accounts.models import User
from audit.models import AuditEntry
from domains.models import Host
from tests.conftest import TEST_DOMAIN_UUID, client_for


def test_every_page_starts_with_a_skip_link_to_the_main_content_and_a_labelled_navigation(admin_user: User):
    body = client_for(admin_user).get("/audit/").content.decode()
    skip = body.index('<a class="skip-link" href="#content">Skip to content</a>')
    assert skip < body.index('<header class="topbar">')
    assert '<main id="content">' in body
    assert '<nav aria-label="Main">' in body
    assert 'href="/audit/" aria-current="page">Audit log</a>' in body
    assert "{#" not in body and "#}" not in body  # a template comment spread over lines is printed, not hidden
    # The hooks the scripts and tests use are still there.
    assert 'id="live-indicator"' in body and 'id="messages"' in body and 'hx-headers=' in body


def test_each_row_s_action_menu_names_its_vm(admin_user: User, embedded_host: Host):
    body = client_for(admin_user).get("/domains/?all&host=embedded").content.decode()
    row = re.search(rf'<tr id="domain-embedded-{TEST_DOMAIN_UUID}".*?</tr>', body, re.S)
    assert row is not None
    summary = re.search(r"<summary>(.*?)</summary>", row.group(0), re.S)
    assert summary is not None
    assert re.sub(r"<[^>]+>|\s+", " ", summary.group(1)).split() == ["Actions", "for", "test"]
    # A phone shows the bulk tick, name, state and actions; the other columns carry the classes that hide them.
    always = [cell for cell in re.findall(r"<td\b[^>]*>", row.group(0)) if "col-" not in cell]
    assert always == ['<td class="select">', '<td class="name">', "<td>", '<td class="actions">']


def test_a_long_audit_value_is_clamped_in_its_cell_with_the_whole_value_in_its_title(admin_user: User):
    hashes = ",".join(f"sha256:{n:064x}" for n in range(8))
    AuditEntry.objects.create(actor_name="alice-admin", action="console.open", result="succeeded",
                              message=f"tickets {hashes}")
    body = client_for(admin_user).get("/audit/").content.decode()
    cell = re.search(r'<td class="audit-message"><span class="clamp" title="([^"]*)">', body)
    assert cell is not None
    assert unescape(cell.group(1)) == f"tickets {hashes}"


def test_a_phone_s_top_bar_opens_its_menu_from_a_labelled_button_that_controls_it(admin_user: User):
    body = client_for(admin_user).get("/audit/").content.decode()
    button = ('<button type="button" class="disclosure menu-toggle" aria-expanded="false" aria-controls="topbar-menu">'
              "Menu</button>")
    # The button comes before what it opens (the stylesheet hides its next sibling while it is collapsed),
    # and the navigation, the sign-out and the language are all inside.
    assert body.index(button) < body.index('<div id="topbar-menu" class="topbar-menu">') < body.index(
        '<nav aria-label="Main">') < body.index('class="logout"') < body.index('class="language"')
    # The live pill stays in the bar itself: a phone sees the connection without opening the menu.
    assert body.index('id="live-indicator"') < body.index(button)
    # Signed out, the bar holds the language chooser alone, shown without a menu to open.
    login = Client().get("/accounts/login/").content.decode()
    assert 'class="language"' in login and "menu-toggle" not in login


def _filters_toggle(body: str) -> str:
    toggle = re.search(r'<button type="button" class="disclosure filters-toggle" aria-controls="filters" '
                       r'aria-expanded="(true|false)">Filters</button>\s*<form id="filters"', body)
    assert toggle is not None
    return toggle.group(1)


def test_a_phone_s_filters_open_from_their_button_and_start_open_when_one_is_in_use(admin_user: User,
                                                                                    embedded_host: Host):
    client = client_for(admin_user)
    assert _filters_toggle(client.get("/domains/?all").content.decode()) == "false"
    for narrowed in ("?all&host=embedded", "?all&q=te", "?inactive", "?all&name", "?"):
        assert _filters_toggle(client.get(f"/domains/{narrowed}").content.decode()) == "true", narrowed


def test_the_list_speaks_vietnamese_to_a_vietnamese_user_down_to_the_live_pill(admin_user: User,
                                                                            embedded_host: Host):
    admin_user.language = "vi"
    admin_user.save()
    body = client_for(admin_user).get("/domains/?all&host=embedded").content.decode()
    pill = re.search(r'<span id="live-indicator"[^>]*>', body)
    assert pill is not None
    words = dict(re.findall(r'data-(text-[a-z-]+)="([^"]*)"', pill.group(0)))
    assert words == {"text-on": "trực tiếp", "text-connecting": "đang kết nối…", "text-off": "mất kết nối",
                     "text-catching-up": "đang bắt kịp…", "text-ended": "đã đăng xuất"}
    assert 'data-title-off="Mất kết nối: trang này có thể đã cũ. Đang kết nối lại…"' in pill.group(0)
    headings = [re.sub(r"<[^>]+>|[▲▼]", "", heading).strip()
                for heading in re.findall(r"<th\b[^>]*>(.*?)</th>", body, re.S)][1:]
    assert headings == ["Máy chủ", "Tên", "Tiêu đề", "Trạng thái", "Địa chỉ", "CPU", "vCPU", "Bộ nhớ đã dùng",
                        "Bộ nhớ", "Tự khởi động", "Lưu lâu dài", "Bản lưu trạng thái", "Ảnh chụp nhanh", "UUID",
                        "Thao tác"]
    assert ">Bộ lọc</button>" in body and "<legend>Hiển thị</legend>" in body
    assert re.search(r'<p class="count" data-one="máy ảo" data-many="máy ảo">1 máy ảo</p>', body)
    assert '<summary>Thao tác<span class="visually-hidden"> cho test</span></summary>' in body
