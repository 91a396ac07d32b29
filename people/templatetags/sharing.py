"""The Share card of a VM's page (templates/domains/detail.html), for those who may share: admins.

Not a VM's owner (Grant.owner): in access.py owning is the right to delete the VM and its disks and a
count against the owner's define allowance, not a say over who else sees it. Letting owners share would
also put every account's name in a tenant's form, and would let a tenant hand out the console and the
owner right, which admins decide.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from domains.access import is_admin
from domains.models import Grant
from domains.rows import DomainRow

from ..forms import GrantForm
from ..selectors import grant_list

register = template.Library()


@register.simple_tag(takes_context=True)
def share_section(context: dict[str, Any], row: DomainRow) -> SafeString:
    request = context["request"]
    if not is_admin(request.user):
        return mark_safe("")  # noqa: S308 (an empty string)
    return mark_safe(render_to_string("people/_share_section.html", {  # noqa: S308 (the template escapes)
        "row": row,
        "form": GrantForm(instance=Grant(host=row.host, domain_uuid=row.uuid)),
        "grants": grant_list(actor=request.user, host_name=row.host.name, uuid=row.uuid),
        "next": reverse("domains:detail", args=[row.host.name, row.uuid]) + "#sharing",
    }, request))
