"""The layout's structure that keyboard and screen-reader users rely on: a skip link to the content, a labelled
navigation, a row menu that names its VM, and long audit values shortened with the whole value in a title."""

from __future__ import annotations

import re
from html import unescape

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
