"""Thin function views: parse the request, call a selector or a service, render."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.forms import BaseForm
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from audit.services import refuse
from vmportal import clients

from . import migration_jobs, selectors, services, virt
from .access import Right, require_admin, sees_hosts
from .errors import error_message
from .filters import LIST_OPTIONS, ListQueryError, parse_list_query
from .forms import (
    BootOrderForm,
    BulkActionForm,
    CdromForm,
    CloneForm,
    DiskAttachForm,
    DiskDetachForm,
    DiskGrowForm,
    DisplayForm,
    DomainDefineForm,
    DomainXmlForm,
    FirmwareForm,
    HostForm,
    MemoryForm,
    MigrationForm,
    NicAttachForm,
    NicDetachForm,
    SnapshotForm,
    VcpusForm,
)
from .models import Host
from .rows import row_element_id

if TYPE_CHECKING:
    from django.http import HttpRequest
    from django_htmx.middleware import HtmxDetails
    from django_stubs_ext import StrOrPromise

    from accounts.models import User

    class AuthedRequest(HttpRequest):
        user: User
        htmx: HtmxDetails


T = TypeVar("T")


def client_addr(request: HttpRequest) -> str | None:
    """The client's address for the audit log (behind a trusted proxy, the one it names)."""
    return clients.request_client_address(request)


def _admin_only(request: AuthedRequest, action: str, domain_uuid: str | None = None) -> None:
    """Hides admin pages from everybody else (access.require_admin); a refused POST is audited as denied."""
    try:
        require_admin(request.user)
    except Http404:
        if request.method == "POST":
            refuse(actor=request.user, action=action, domain_uuid=domain_uuid, client_addr=client_addr(request))
        raise


def _posted(request: AuthedRequest) -> QueryDict | None:
    """The form data of a POST (even an empty one), None for a GET."""
    return request.POST if request.method == "POST" else None


@login_required
@require_GET
def domain_list(request: AuthedRequest) -> HttpResponse:
    try:
        query = parse_list_query(request.GET)
    except ListQueryError as error:
        if request.GET.get("format") == "json":
            return JsonResponse({"error": str(error)}, status=400)
        return render(request, "domains/list.html", {"error": str(error), "list_options": LIST_OPTIONS},
                      status=400)
    listing = selectors.domain_list(user=request.user, query=query)
    if query.json:
        return JsonResponse(listing.as_json())
    if request.htmx:
        return render(request, "domains/list.html#results", {"listing": listing, "query": query})
    return render(request, "domains/list.html", {
        "listing": listing,
        "query": query,
        "list_options": LIST_OPTIONS,
        "may_define": selectors.may_define(user=request.user),
        "consumers": selectors.top_consumers(user=request.user, hosts=listing.hosts),
        "bulk_form": BulkActionForm(),
    })


@login_required
@require_GET
def domain_detail(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    # An unreachable host (or any libvirt error) is answered by vmportal.errors.VirtErrorMiddleware.
    page = selectors.domain_page(user=request.user, host_name=host_name, uuid=str(uuid))
    return render(request, "domains/detail.html", {"page": page, "row": page.row,
                                                   "may_see_hosts": sees_hosts(request.user)})


@login_required
@require_GET
def domain_usage(request: AuthedRequest, host_name: str, uuid: UUID) -> JsonResponse:
    """The VM's usage charts' figures over ?span=hour|day|week|month (default hour), from the kept history."""
    return _usage_answer(request, lambda span: selectors.usage_series(
        user=request.user, host_name=host_name, uuid=str(uuid), span=span))


def _usage_answer(request: AuthedRequest, read: Callable[[str], selectors.UsageSeries]) -> JsonResponse:
    """The charts' JSON (templates/domains/usage.html) of the series `read` gives for the request's span."""
    try:
        usage = read(request.GET.get("span", "hour"))
    except selectors.UnknownSpan as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse({
        "span": usage.span, "resolution": usage.resolution, "memory_source": usage.memory_source,
        "interval": settings.USAGE_INTERVAL_SECONDS, "series": usage.columns,
    })


@login_required
@require_GET
def domain_agent(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    try:
        info, error = selectors.domain_guest_info(user=request.user, host_name=host_name, uuid=str(uuid)), ""
    except virt.VirtError as failure:
        info, error = None, error_message(user=request.user, error=failure)
    return render(request, "domains/detail.html#agent", {"info": info, "agent_error": error})


def _after_action(request: AuthedRequest, host_name: str, uuid: str) -> HttpResponse:
    """htmx gets the fresh row (or the VM page's summary) plus the message; others a redirect."""
    if not request.htmx:
        return redirect("domains:detail", host_name, uuid)
    try:
        row = selectors.domain_get(user=request.user, host_name=host_name, uuid=uuid)
    except Http404:
        # Deleted (or no longer visible): the row leaves the list.
        return render_with_messages(request, "domains/gone.html", {"dom_id": row_element_id(host_name, uuid)})
    template = "domains/list.html#row" if request.htmx.target == row.dom_id else "domains/detail.html#summary"
    return render_with_messages(request, template, {"row": row})


def render_with_messages(request: AuthedRequest, template: str, context: dict[str, object]) -> HttpResponse:
    response = render(request, template, context)
    response.write(render_to_string("base.html#messages", {"oob": True}, request))
    return response


def _run(request: AuthedRequest, call: Callable[[], StrOrPromise]) -> None:
    try:
        messages.success(request, call())
    except virt.VirtError as error:
        messages.error(request, error_message(user=request.user, error=error))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))


def _on_form(form: BaseForm, call: Callable[[], T], *, user: User) -> T | None:
    """Runs a service for a valid form; a refusal or libvirt's error goes on the form, the input stays."""
    try:
        return call()
    except ValidationError as error:
        form.add_error(None, error)
    except virt.VirtError as error:
        form.add_error(None, error_message(user=user, error=error))
    return None


@login_required
@require_POST
def domain_action(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    try:
        action = virt.Action(request.POST.get("action", ""))
        mode = virt.PowerMode(request.POST.get("mode", virt.PowerMode.AUTO))
    except ValueError:
        return HttpResponseBadRequest(_("Unknown action."))
    _run(request, lambda: services.domain_act(
        actor=request.user, host_name=host_name, uuid=str(uuid), action=action, mode=mode,
        client_addr=client_addr(request)))
    return _after_action(request, host_name, str(uuid))


@login_required
@require_POST
def domain_bulk(request: AuthedRequest) -> HttpResponse:
    """The list's bulk action: each ticked VM's outcome in words (done, the error, or refused)."""
    form = BulkActionForm(request.POST)
    results: list[services.BulkResult] = []
    if form.is_valid():
        targets = form.cleaned_data["vm"]
        results = services.domain_bulk(actor=request.user, action=form.cleaned_data["action"], targets=targets,
                                       client_addr=client_addr(request))
    names = selectors.domain_names(user=request.user, keys=[(r.host_name, r.uuid) for r in results])
    template = "domains/bulk.html#results" if request.htmx else "domains/bulk.html"
    # htmx swaps only a 2xx answer: a form error must reach the page too.
    return render(request, template, {"form": form, "results": [(result, names.get((result.host_name, result.uuid)))
                                                                for result in results]},
                  status=400 if form.errors and not request.htmx else 200)


@login_required
@require_POST
def domain_delete(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    _run(request, lambda: services.domain_delete(
        actor=request.user, host_name=host_name, uuid=str(uuid),
        remove_managed_save="remove_managed_save" in request.POST,
        remove_snapshot_metadata="remove_snapshot_metadata" in request.POST,
        remove_nvram="remove_nvram" in request.POST,
        disk_targets=request.POST.getlist("disk"),
        client_addr=client_addr(request)))
    if request.htmx:
        return HttpResponseClientRedirect(reverse("domains:list") + "?all")
    return redirect(reverse("domains:list") + "?all")


@login_required
@require_POST
def snapshot_create(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    form = SnapshotForm(request.POST)
    if form.is_valid():
        _run(request, lambda: services.snapshot_create(
            actor=request.user, host_name=host_name, uuid=str(uuid), client_addr=client_addr(request),
            **form.cleaned_data))
    else:
        messages.error(request, "; ".join(str(message) for errors in form.errors.values() for message in errors))
    return redirect("domains:detail", host_name, uuid)


@login_required
@require_POST
def snapshot_action(request: AuthedRequest, host_name: str, uuid: UUID, name: str) -> HttpResponse:
    service = {"revert": services.snapshot_revert, "delete": services.snapshot_delete}.get(
        request.POST.get("action", ""))
    if service is None:
        return HttpResponseBadRequest(_("Unknown snapshot action."))
    _run(request, lambda: service(actor=request.user, host_name=host_name, uuid=str(uuid), name=name,
                                  client_addr=client_addr(request)))
    return redirect("domains:detail", host_name, uuid)


@login_required
@require_http_methods(["GET", "POST"])
def host_list(request: AuthedRequest) -> HttpResponse:
    _admin_only(request, "host.register")
    form = HostForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        host = services.host_register(
            actor=request.user, client_addr=client_addr(request), **form.cleaned_data
        )
        messages.success(request, _("Host %(name)s registered.") % {"name": host.name})
        return redirect("domains:hosts")
    return render(request, "hosts/list.html", {"hosts": selectors.host_list(), "form": form},
                  status=400 if form.errors else 200)


@login_required
@require_GET
def host_detail(request: AuthedRequest, host_name: str) -> HttpResponse:
    """Admins and operators: the host's capacity, versions, VMs, charts and top consumers. A host that does
    not answer still has its page (selectors.host_page)."""
    return render(request, "hosts/detail.html", {"page": selectors.host_page(user=request.user, host_name=host_name)})


@login_required
@require_GET
def host_usage(request: AuthedRequest, host_name: str) -> JsonResponse:
    """The host page's charts' figures over ?span=, as domain_usage's for a VM."""
    return _usage_answer(request, lambda span: selectors.host_usage_series(
        user=request.user, host_name=host_name, span=span))


@login_required
@require_http_methods(["GET", "POST"])
def host_edit(request: AuthedRequest, host_name: str) -> HttpResponse:
    _admin_only(request, "host.update")
    host = get_object_or_404(Host, name=host_name)
    form = HostForm(_posted(request), instance=host)
    form.fields["name"].disabled = True
    if request.method == "POST" and form.is_valid():
        services.host_update(actor=request.user, host=host, uri=form.cleaned_data["uri"],
                             enabled=form.cleaned_data["enabled"],
                             migration_address=form.cleaned_data["migration_address"],
                             client_addr=client_addr(request))
        messages.success(request, _("Host %(name)s saved.") % {"name": host.name})
        return redirect("domains:hosts")
    return render(request, "hosts/edit.html", {"host": host, "form": form}, status=400 if form.errors else 200)


@login_required
@require_POST
def host_delete(request: AuthedRequest, host_name: str) -> HttpResponse:
    # The service is the gate here, so a refused attempt is audited as denied.
    host = get_object_or_404(Host, name=host_name)
    services.host_delete(actor=request.user, host=host, client_addr=client_addr(request))
    messages.success(request, _("Host %(name)s removed from the dashboard.") % {"name": host_name})
    if request.htmx:
        return HttpResponseClientRedirect("/hosts/")
    return redirect("domains:hosts")


@login_required
@require_POST
def host_test(request: AuthedRequest, host_name: str) -> HttpResponse:
    # The service is the gate here, so a refused attempt is audited as denied.
    host = get_object_or_404(Host, name=host_name)
    facts, error = None, ""
    cause: StrOrPromise = ""
    try:
        facts = services.host_test_connection(actor=request.user, host=host, client_addr=client_addr(request))
    except virt.VirtError as failure:
        error = error_message(user=request.user, error=failure)
        # Only admins get this far (the service refuses anyone else): the cause is about the host's set-up.
        cause = failure.cause if isinstance(failure, virt.HostUnreachable) else ""
    template = "hosts/list.html#test-result" if request.htmx else "hosts/test.html"
    return render(request, template, {"host": host, "facts": facts, "error": error, "cause": cause})


@login_required
@require_http_methods(["GET", "POST"])
def domain_new(request: AuthedRequest) -> HttpResponse:
    """Pick a host, fill the form, preview the XML, define; bad input comes back with its values.

    An htmx GET with `check` (the page, as the name, memory or ports are typed) answers their errors only."""
    host_name = request.POST.get("host") or request.GET.get("host", "")
    if not host_name:
        hosts = selectors.define_hosts(user=request.user)
        if not hosts:
            raise Http404("You may not define machines.")
        return render(request, "domains/new.html", {"hosts": hosts})
    try:
        context = selectors.define_context(user=request.user, host_name=host_name)
    except Http404:
        if request.method == "POST":
            refuse(actor=request.user, action="domain.define", client_addr=client_addr(request))
        raise
    except virt.VirtError as error:
        messages.error(request, _("Host %(host)s: %(error)s") % {"host": host_name, "error": error})
        return redirect("domains:new")
    checking = request.method == "GET" and request.htmx and "check" in request.GET
    form = DomainDefineForm(
        request.GET if checking else _posted(request), choices=context.choices, in_use=context.in_use,
        may_boot_kernel=context.limits.unlimited, may_choose_listen=request.user.sees_every_domain,
    )
    if checking:  # the fields checked as they are typed: their errors, each swapped in beside its field
        form.is_valid()
        return render(request, "domains/new.html#checks", {"form": form})
    preview = ""
    # Validation asks the host what is in use: one that stopped answering since the page was drawn is said on
    # the form, which keeps what was typed.
    if request.method == "POST" and _on_form(form, form.is_valid, user=request.user):
        spec = form.domain_spec()
        if "preview" in request.POST:
            preview = _on_form(form, lambda: selectors.define_preview(context=context, spec=spec),
                               user=request.user) or ""
        elif uuid := _on_form(form, lambda: services.domain_define(
                actor=request.user, host_name=host_name, spec=spec, autostart=form.cleaned_data["autostart"],
                client_addr=client_addr(request)), user=request.user):
            messages.success(request, _("%(name)s defined on %(host)s.") % {"name": spec.name, "host": host_name})
            return redirect("domains:detail", host_name, uuid)
    return render(request, "domains/new.html", {"context": context, "form": form, "preview": preview},
                  status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def domain_new_xml(request: AuthedRequest) -> HttpResponse:
    _admin_only(request, "domain.define-xml")
    hosts = list(selectors.enabled_hosts())
    form = DomainXmlForm(_posted(request))
    host_name = request.POST.get("host", "")
    if request.method == "POST" and form.is_valid():
        try:
            uuid = services.domain_define_xml(actor=request.user, host_name=host_name, xml=form.cleaned_data["xml"],
                                              client_addr=client_addr(request))
        except virt.VirtError as error:
            form.add_error("xml", str(error))
        else:
            messages.success(request, _("Defined on %(host)s.") % {"host": host_name})
            return redirect("domains:detail", host_name, uuid)
    return render(request, "domains/new_xml.html", {"form": form, "hosts": hosts, "host_name": host_name},
                  status=400 if form.errors else 200)


def _refused_unless(request: AuthedRequest, action: str, uuid: UUID, read: Callable[[], T]) -> T:
    """`read` through the gate; a 404 to a POST is audited as a denied `action`."""
    try:
        return read()
    except Http404:
        if request.method == "POST":
            refuse(actor=request.user, action=action, domain_uuid=str(uuid), client_addr=client_addr(request))
        raise


@login_required
@require_http_methods(["GET", "POST"])
def domain_display(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    def operable_page() -> selectors.DomainPage:
        page = selectors.domain_page(user=request.user, host_name=host_name, uuid=str(uuid))
        if Right.OPERATE not in page.row.rights:
            raise Http404("No such virtual machine.")
        return page

    page = _refused_unless(request, "domain.display", uuid, operable_page)
    current = page.devices.graphics[0] if page.devices.graphics else None
    initial = {
        "video_model": (page.devices.video_models or ("vga",))[0],
        "graphics": current.kind if current else "none",
        "listen": current.listen if current and current.listen else "127.0.0.1",
        "port": current.port if current and not current.autoport else None,
        "tls_port": current.tls_port if current else None,
        "keymap": current.keymap if current else "",
    }
    form = DisplayForm(_posted(request), initial=initial, may_choose_listen=request.user.sees_every_domain)
    if request.method == "POST" and form.is_valid():
        message = _on_form(form, lambda: services.domain_update_display(
            actor=request.user, host_name=host_name, uuid=str(uuid), video_model=form.cleaned_data["video_model"],
            graphics=form.graphics_spec(), client_addr=client_addr(request)), user=request.user)
        if message is not None:
            messages.success(request, message)
            return redirect("domains:detail", host_name, uuid)
    return render(request, "domains/display.html", {"row": page.row, "form": form, "current": current},
                  status=400 if form.errors else 200)


# --- A VM's hardware: one small form per change on one page, the XML editor (admins) and clone. ---


def hardware_forms(page: selectors.HardwarePage, change: str, data: Mapping[str, Any] | None) -> dict[str, BaseForm]:
    """Every change's form, bound to `data` only for the one submitted (its name is the form's prefix); the
    API's resource binds them too."""
    hardware = page.hardware

    def bound(name: str) -> dict[str, Any]:
        return {"data": data if name == change else None, "prefix": name}

    return {
        # The maxima start empty: kept as they are, or raised to what the count needs.
        "vcpus": VcpusForm(**bound("vcpus"), initial={"vcpus": hardware.vcpus}),
        "memory": MemoryForm(**bound("memory"), initial={"memory_mib": hardware.memory_mib}),
        "cdrom": CdromForm(**bound("cdrom"), drives=[disk.target for disk in hardware.cdroms],
                           images=[volume.key for volume in page.images],
                           may_add_drive=hardware.persistent and not hardware.running),
        "disk-attach": DiskAttachForm(**bound("disk-attach"), volumes=[volume.key for volume in page.volumes],
                                      pools=list(page.pools)),
        "disk-detach": DiskDetachForm(**bound("disk-detach"), targets=[
            disk.target for disk in hardware.disks if disk.device == "disk"]),
        "disk-grow": DiskGrowForm(**bound("disk-grow"), targets=[
            disk.target for disk in hardware.disks if disk.device == "disk" and disk.volume is not None]),
        "nic-attach": NicAttachForm(**bound("nic-attach"), networks=list(page.networks),
                                    may_use_bridges=page.may_use_bridges),
        "nic-detach": NicDetachForm(**bound("nic-detach"), macs=[nic.mac for nic in hardware.nics]),
        "boot-order": BootOrderForm(**bound("boot-order"), initial=dict(zip(
            ("first", "second", "third"), hardware.boot_order, strict=False))),
        "firmware": FirmwareForm(**bound("firmware"), initial={"firmware": hardware.firmware}),
    }


def hardware_change(change: str, form: BaseForm) -> Callable[..., StrOrPromise]:
    """The service call of a valid form, waiting for the actor, host, VM and client address."""
    data = form.cleaned_data
    calls: dict[str, Callable[..., StrOrPromise]] = {
        "vcpus": lambda **who: services.domain_set_vcpus(**who, vcpus=data["vcpus"], max_vcpus=data["max_vcpus"]),
        "memory": lambda **who: services.domain_set_memory(**who, memory_mib=data["memory_mib"],
                                                           max_memory_mib=data["max_memory_mib"]),
        "cdrom": lambda **who: services.domain_change_cdrom(**who, drive=data["drive"], volume=data["volume"]),
        "disk-attach": lambda **who: services.domain_attach_disk(**who, bus=data["bus"], volume=data["volume"],
                                                                 pool=data["pool"], size_gib=data["size_gib"] or 0),
        "disk-detach": lambda **who: services.domain_detach_disk(**who, target=data["target"]),
        "disk-grow": lambda **who: services.domain_grow_disk(**who, target=data["target"], size_gib=data["size_gib"]),
        "nic-attach": lambda **who: services.domain_attach_nic(
            **who, kind=data["kind"], source=cast(NicAttachForm, form).source, model=data["model"], mac=data["mac"]),
        "nic-detach": lambda **who: services.domain_detach_nic(**who, mac=data["mac"]),
        "boot-order": lambda **who: services.domain_set_boot_order(**who, devices=cast(BootOrderForm, form).devices()),
        "firmware": lambda **who: services.domain_set_firmware(**who, firmware=data["firmware"]),
    }
    return calls[change]


# Each change's heading and button, in the page's order (translated when the page renders them).
HARDWARE_CHANGES = {
    "vcpus": (gettext_lazy("vCPUs"), gettext_lazy("Set vCPUs")),
    "memory": (gettext_lazy("Memory"), gettext_lazy("Set memory")),
    "cdrom": (gettext_lazy("CD-ROM"), gettext_lazy("Insert or eject")),
    "disk-attach": (gettext_lazy("Attach a disk"), gettext_lazy("Attach")),
    "disk-grow": (gettext_lazy("Grow a disk"), gettext_lazy("Grow")),
    "disk-detach": (gettext_lazy("Detach a disk"), gettext_lazy("Detach")),
    "nic-attach": (gettext_lazy("Plug a network interface"), gettext_lazy("Plug in")),
    "nic-detach": (gettext_lazy("Unplug a network interface"), gettext_lazy("Unplug")),
    "boot-order": (gettext_lazy("Boot order"), gettext_lazy("Set boot order")),
    "firmware": (gettext_lazy("Firmware"), gettext_lazy("Set firmware")),
}


@login_required
@require_http_methods(["GET", "POST"])
def domain_hardware(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    """The VM's vCPUs, memory, CD-ROMs, disks, NICs, boot order and firmware, each with its own form."""
    change = request.POST.get("change", "") if request.method == "POST" else ""
    page = _refused_unless(request, f"domain.{change or 'hardware'}", uuid, lambda: selectors.hardware_page(
        user=request.user, host_name=host_name, uuid=str(uuid)))
    forms = hardware_forms(page, change, _posted(request))
    if request.method == "POST":
        form = forms.get(change)
        if form is None:
            return HttpResponseBadRequest(_("Unknown hardware change."))
        if form.is_valid():
            call = hardware_change(change, form)
            message = _on_form(form, lambda: call(actor=request.user, host_name=host_name, uuid=str(uuid),
                                                  client_addr=client_addr(request)), user=request.user)
            if message is not None:
                messages.success(request, message)
                return redirect("domains:hardware", host_name, uuid)
    changes = [(name, *HARDWARE_CHANGES[name], form) for name, form in forms.items()]
    return render(request, "domains/hardware.html", {"page": page, "row": page.row, "changes": changes},
                  status=400 if any(form.errors for form in forms.values()) else 200)


@login_required
@require_http_methods(["GET", "POST"])
def domain_definition(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    """Admins edit the XML; "preview" shows the diff to what libvirt holds, "save" has libvirt validate it."""
    row, current = _refused_unless(request, "domain.xml", uuid, lambda: selectors.domain_definition(
        user=request.user, host_name=host_name, uuid=str(uuid)))
    form = DomainXmlForm(_posted(request), initial={"xml": current})
    diff = ""
    if request.method == "POST" and form.is_valid():
        edited = form.cleaned_data["xml"]
        diff = virt.hardware.xml_diff(current, edited)
        if "save" in request.POST:
            message = _on_form(form, lambda: services.domain_redefine_xml(
                actor=request.user, host_name=host_name, uuid=str(uuid), xml=edited,
                client_addr=client_addr(request)), user=request.user)
            if message is not None:
                messages.success(request, message)
                return redirect("domains:hardware", host_name, uuid)
    return render(request, "domains/definition.html", {"row": row, "form": form, "diff": diff, "posted":
                                                       request.method == "POST"}, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def domain_clone(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    page = _refused_unless(request, "domain.clone", uuid, lambda: selectors.hardware_page(
        user=request.user, host_name=host_name, uuid=str(uuid)))
    form = CloneForm(_posted(request), initial={"name": f"{page.row.record.name}-clone"})
    if request.method == "POST" and form.is_valid():
        name = form.cleaned_data["name"]
        clone_uuid = _on_form(form, lambda: services.domain_clone(
            actor=request.user, host_name=host_name, uuid=str(uuid), name=name,
            client_addr=client_addr(request)), user=request.user)
        if clone_uuid is not None:
            messages.success(request, _("%(name)s cloned as %(clone)s.") % {"name": page.row.record.name,
                                                                             "clone": name})
            return redirect("domains:detail", host_name, clone_uuid)
    return render(request, "domains/clone.html", {"page": page, "row": page.row, "form": form},
                  status=400 if form.errors else 200)


# --- Migration: admins only (everybody else gets a 404; a refused POST is audited). ---


@login_required
@require_http_methods(["GET", "POST"])
def domain_migrate(request: AuthedRequest, host_name: str, uuid: UUID) -> HttpResponse:
    """The host picker with pre-checks (GET, re-fetched by htmx as choices change) and the submit (POST)."""
    _admin_only(request, "domain.migrate", domain_uuid=str(uuid))
    data = request.POST if request.method == "POST" else (request.GET if "checked" in request.GET else None)
    form = MigrationForm(data, initial={"destination": request.GET.get("destination", "")})
    options = form.options() if data is not None and form.is_valid() else None
    destination = (form.cleaned_data.get("destination", "") if data is not None and form.is_valid()
                   else request.GET.get("destination", ""))
    status = 200
    if request.method == "POST" and form.is_valid() and options is not None:
        job = _on_form(form, lambda: services.migration_start(
            actor=request.user, host_name=host_name, uuid=str(uuid), destination_name=destination,
            options=options, client_addr=client_addr(request)), user=request.user)
        if job is not None:
            return redirect("domains:migration", job.pk)
    if form.errors:
        status = 400
    try:
        page = selectors.migration_page(user=request.user, host_name=host_name, uuid=str(uuid),
                                        destination_name=destination, options=options)
    except virt.HostUnreachable as error:
        return render(request, "domains/detail.html", {"error": str(error), "host_name": host_name}, status=503)
    template = "domains/migrate.html#checks" if request.htmx and request.htmx.target == "checks" else \
        "domains/migrate.html"
    return render(request, template, {"page": page, "row": page.row, "form": form}, status=status)


@login_required
@require_GET
def migration_detail(request: AuthedRequest, job_id: int) -> HttpResponse:
    job = selectors.migration_job_get(user=request.user, job_id=job_id)
    return render(request, "domains/migrate_job.html", migration_jobs.progress_context(job))


@login_required
@require_POST
def migration_action(request: AuthedRequest, job_id: int) -> HttpResponse:
    service = {"cancel": services.migration_cancel, "postcopy": services.migration_postcopy}.get(
        request.POST.get("action", ""))
    if service is None:
        return HttpResponseBadRequest(_("Unknown migration action."))
    _run(request, lambda: service(actor=request.user, job_id=job_id, client_addr=client_addr(request)))
    if request.htmx:
        job = selectors.migration_job_get(user=request.user, job_id=job_id)
        return render_with_messages(request, "domains/migrate_job.html#progress", migration_jobs.progress_context(job))
    return redirect("domains:migration", job_id)
