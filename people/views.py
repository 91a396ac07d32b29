"""Users, groups, grants and define allowances for admins; everybody else gets 404 (access.require_admin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from uuid import UUID

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.forms import BaseForm
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import User
from domains import selectors as domain_selectors
from domains import services as domain_services
from domains.models import DefineAllowance, Grant, Host
from domains.views import _admin_only, _posted, client_addr

from . import selectors, services
from .forms import AllowanceForm, GrantCreateForm, GrantForm, GroupForm, UserCreateForm, UserEditForm, put_errors

if TYPE_CHECKING:
    from domains.views import AuthedRequest

T = TypeVar("T")


def _form_page(request: AuthedRequest, form: BaseForm, save: Callable[[], T], done: Callable[[T], tuple[str, str]],
               template: str, context: dict[str, object]) -> HttpResponse:
    """A page with a form: a valid POST runs the service and goes where `done` says (its message, its URL);
    a refusal goes beside the fields, with everything typed kept (400)."""
    if request.method == "POST" and form.is_valid():
        try:
            saved = save()
        except ValidationError as error:
            put_errors(form, error)
        else:
            message, url = done(saved)
            messages.success(request, message)
            return redirect(url)
    return render(request, template, {**context, "form": form}, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def user_list(request: AuthedRequest) -> HttpResponse:
    _admin_only(request, "user.create")
    form = UserCreateForm(_posted(request))
    return _form_page(
        request, form,
        lambda: services.user_create(
            actor=request.user, username=form.cleaned_data["username"], password=form.cleaned_data["password"],
            role=form.cleaned_data["role"], groups=form.cleaned_data["groups"], client_addr=client_addr(request)),
        lambda user: (_("User %(name)s created.") % {"name": user.username}, reverse("people:user", args=[user.pk])),
        "people/users.html", {"users": selectors.user_list(actor=request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def user_detail(request: AuthedRequest, user_id: int) -> HttpResponse:
    _admin_only(request, "user.update")
    person = get_object_or_404(User, pk=user_id)
    form = UserEditForm(_posted(request), initial={
        "role": person.role, "is_active": person.is_active, "groups": list(person.groups.all())})

    def done(updated: User) -> tuple[str, str]:
        if updated.pk == request.user.pk:
            update_session_auth_hash(request, updated)  # a new password of one's own keeps one signed in
        return _("User %(name)s saved.") % {"name": updated.username}, reverse("people:user", args=[updated.pk])

    return _form_page(
        request, form,
        lambda: services.user_update(
            actor=request.user, user=person, role=form.cleaned_data["role"],
            is_active=form.cleaned_data["is_active"], groups=form.cleaned_data["groups"],
            password=form.cleaned_data["password"], client_addr=client_addr(request)),
        done, "people/user.html", {"person": person, **_holdings(request, person)})


def _holdings(request: AuthedRequest, holder: User | Group) -> dict[str, object]:
    """What a user (with its groups') or a group holds: its grants and define allowances."""
    return {"grants": selectors.grant_list(actor=request.user, holder=holder),
            "allowances": selectors.allowance_list(actor=request.user, holder=holder)}


def _group_saved(request: AuthedRequest, form: GroupForm) -> Group:
    return services.group_save(actor=request.user, group=form.instance, members=form.cleaned_data["members"],
                               client_addr=client_addr(request))


def _group_done(group: Group) -> tuple[str, str]:
    return _("Group %(name)s saved.") % {"name": group.name}, reverse("people:group", args=[group.pk])


@login_required
@require_http_methods(["GET", "POST"])
def group_list(request: AuthedRequest) -> HttpResponse:
    _admin_only(request, "group.create")
    form = GroupForm(_posted(request))
    return _form_page(request, form, lambda: _group_saved(request, form), _group_done, "people/groups.html",
                      {"groups": selectors.group_list(actor=request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def group_detail(request: AuthedRequest, group_id: int) -> HttpResponse:
    _admin_only(request, "group.update")
    group = get_object_or_404(Group, pk=group_id)
    form = GroupForm(_posted(request), instance=group)
    return _form_page(request, form, lambda: _group_saved(request, form), _group_done, "people/group.html",
                      {"group": group, **_holdings(request, group)})


def _share(request: AuthedRequest, form: GrantForm, host_name: str, uuid: str) -> Grant:
    data = form.cleaned_data
    return services.grant_share(
        actor=request.user, host=get_object_or_404(Host, name=host_name), uuid=uuid, user=data["user"],
        group=data["group"], can_operate=data["can_operate"], can_console=data["can_console"], owner=data["owner"],
        client_addr=client_addr(request))


def _shared(vm_name: str, grant: Grant, url: str) -> tuple[str, str]:
    return _("%(vm)s shared with %(holder)s.") % {"vm": vm_name, "holder": grant.user or grant.group}, url


@login_required
@require_http_methods(["GET", "POST"])
def grant_list(request: AuthedRequest) -> HttpResponse:
    """Every grant (or one VM's, ?vm=host/uuid), and a form to add one with a VM picker."""
    _admin_only(request, "grant.save")
    vm = request.GET.get("vm", "")
    host_name, _slash, uuid = vm.partition("/")
    form = GrantCreateForm(_posted(request), vms=selectors.vm_choices(actor=request.user), initial={"vm": vm})
    return _form_page(
        request, form, lambda: _share(request, form, *form.vm_key()),
        lambda grant: _shared(grant.domain_name, grant, request.get_full_path()),
        "people/grants.html",
        {"vm": vm, "grants": selectors.grant_list(actor=request.user, host_name=host_name, uuid=uuid)})


@login_required
@require_http_methods(["GET", "POST"])
def share(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    """The VM page's Share form posts here; a refused share is shown again on a page of its own."""
    _admin_only(request, "grant.save", domain_uuid=str(uuid))
    row = domain_selectors.domain_get(user=request.user, host_name=host_name, uuid=str(uuid))
    form = GrantForm(_posted(request), instance=Grant(host=row.host, domain_uuid=row.uuid))
    vm_page = reverse("domains:detail", args=[host_name, row.uuid]) + "#sharing"
    return _form_page(
        request, form, lambda: _share(request, form, host_name, row.uuid),
        lambda grant: _shared(row.record.name, grant, vm_page), "people/share.html",
        {"row": row, "grants": selectors.grant_list(actor=request.user, host_name=host_name, uuid=row.uuid)})


def _back(request: AuthedRequest, fallback: str) -> HttpResponseRedirect:
    """Back where the form was (its `next`, when it is a page of this site)."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(fallback)


@login_required
@require_POST
def grant_revoke(request: AuthedRequest, grant_id: int) -> HttpResponse:
    _admin_only(request, "grant.revoke")
    grant = get_object_or_404(Grant.objects.select_related("host", "user", "group"), pk=grant_id)
    domain_services.grant_revoke(actor=request.user, grant=grant, client_addr=client_addr(request))
    messages.success(request, _("%(holder)s no longer shares %(vm)s.") % {
        "holder": grant.user or grant.group, "vm": grant.domain_name or grant.domain_uuid})
    return _back(request, reverse("people:grants"))


def _allowance_saved(request: AuthedRequest, form: AllowanceForm) -> DefineAllowance:
    return services.allowance_save(actor=request.user, allowance=form.save(commit=False),
                                   hosts=form.cleaned_data["hosts"], pools=form.cleaned_data["pools"],
                                   client_addr=client_addr(request))


def _allowance_done(allowance: DefineAllowance) -> tuple[str, str]:
    return (_("Define allowance of %(holder)s saved.") % {"holder": allowance.user or allowance.group},
            reverse("people:allowances"))


@login_required
@require_http_methods(["GET", "POST"])
def allowance_list(request: AuthedRequest) -> HttpResponse:
    _admin_only(request, "allowance.create")
    form = AllowanceForm(_posted(request))
    return _form_page(request, form, lambda: _allowance_saved(request, form), _allowance_done,
                      "people/allowances.html", {"allowances": selectors.allowance_list(actor=request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def allowance_detail(request: AuthedRequest, allowance_id: int) -> HttpResponse:
    _admin_only(request, "allowance.update")
    allowance = get_object_or_404(DefineAllowance, pk=allowance_id)
    form = AllowanceForm(_posted(request), instance=allowance)
    return _form_page(request, form, lambda: _allowance_saved(request, form), _allowance_done,
                      "people/allowance.html", {"allowance": allowance})


@login_required
@require_POST
def allowance_delete(request: AuthedRequest, allowance_id: int) -> HttpResponse:
    _admin_only(request, "allowance.delete")
    allowance = get_object_or_404(DefineAllowance.objects.select_related("user", "group"), pk=allowance_id)
    services.allowance_delete(actor=request.user, allowance=allowance, client_addr=client_addr(request))
    messages.success(request, _("Define allowance of %(holder)s deleted.") % {
        "holder": allowance.user or allowance.group})
    return _back(request, reverse("people:allowances"))
