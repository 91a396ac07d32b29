"""The API's resources: a second face on the same selectors and services as the pages, never a second gate.

Class-based views (DRF's APIView), the ecosystem's convention, so that the one base class below names the
request's token in every audit row its services write, and drf-spectacular documents each method. Writes
are validated by the pages' own forms, so a refusal reads the same words as on the page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.paginator import Paginator
from django.forms import BaseForm
from django.http import Http404
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotAuthenticated, ParseError
from rest_framework.exceptions import ValidationError as InputError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from audit.models import AuditEntry
from audit.selectors import audit_list
from audit.services import API_TOKEN_NAME, record, refuse
from consoles import services as consoles
from domains import selectors, services, virt
from domains.access import Right, require_admin, sees_hosts
from domains.errors import error_message
from domains.filters import LIST_OPTIONS, ListQueryError, parse_list_query
from domains.forms import DisplayForm, DomainDefineForm, DomainXmlForm, MigrationForm, SnapshotForm
from domains.models import DefineAllowance, Grant, Host, StoragePool
from domains.rows import DomainRow
from people import services as people
from vmportal.clients import request_client_address
from vmportal.origins import request_origin

from . import serializers as docs
from .models import ApiToken
from .problems import CONTENT_TYPE as PROBLEM_TYPE
from .problems import one_of, problem, validation_problem

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise
    from rest_framework.request import Request

PROBLEMS = {code: OpenApiResponse(docs.ProblemSerializer, description=text) for code, text in (
    (400, "Refused input, in the page's words."), (401, "No valid token or session."),
    (403, "Not permitted (a read-only token writing, or a right the caller lacks on a VM it may see)."),
    (404, "Nothing here, or nothing the caller may see."), (409, "Not possible in the VM's state."),
    (429, "Too many requests for this token."))}


def _answers(body: Any, *codes: int, success: int = 200) -> dict[Any, Any]:
    """The success's document, and the problems (RFC 9457) this route may answer besides those any route may."""
    return {success: body, **{(code, PROBLEM_TYPE): PROBLEMS[code] for code in (401, 404, 429, *codes)}}


# Every resource's base: the audit writer names the request's token (audit.services.API_TOKEN_NAME). A comment,
# not a docstring: drf-spectacular would print a docstring as the description of every route.
class ApiView(APIView):

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        before = API_TOKEN_NAME.set("")
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            API_TOKEN_NAME.reset(before)

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        if isinstance(request.auth, ApiToken):
            API_TOKEN_NAME.set(request.auth.name)

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> NoReturn:
        """A signed-in caller refused before any service (a read-only token writing) still leaves a denied row."""
        if request.user and request.user.is_authenticated and request.method not in SAFE_METHODS:
            record(actor=self.actor, action="api.refused", result=AuditEntry.Result.DENIED,
                   message=f"{request.method} {request.path}: {message or 'not permitted'}",
                   client_addr=self.client_addr)
        super().permission_denied(request, message, code)

    @contextmanager
    def refusal_audited(self, action: str, uuid: str | None = None) -> Iterator[None]:
        """A 404 from the gate before any service ran is audited as the page audits a refused POST."""
        try:
            yield
        except Http404:
            refuse(actor=self.actor, action=action, domain_uuid=uuid, client_addr=self.client_addr)

    def refused_input(self, form: BaseForm, action: str, gate: Callable[[], object],
                      uuid: str | None = None) -> Response | None:
        """The problem of an invalid form, once `gate` has let the caller see what it names (else the audited
        404, so that a refusal in words never confirms what the caller may not see); None for a valid form."""
        if form.is_valid():
            return None
        with self.refusal_audited(action, uuid):
            gate()
        return _form_problem(form)

    @property
    def actor(self) -> User:
        user = self.request.user
        if not isinstance(user, User):  # IsAuthenticated lets no one else in; a route that allows anyone asks not
            raise NotAuthenticated()
        return user

    @property
    def client_addr(self) -> str | None:
        return request_client_address(self.request._request)


def _body(request: Request) -> Mapping[str, Any]:
    """The request's fields: a JSON object, or a form's."""
    if not isinstance(request.data, Mapping):
        raise ParseError(_("Send the fields as a JSON object or as a form."))
    return request.data


def _form_problem(form: BaseForm) -> Response:
    return validation_problem({name: [str(text) for text in texts] for name, texts in form.errors.items()})


def _domain_url(host_name: str, uuid: str) -> str:
    return reverse("api:domain", args=[host_name, uuid])


def _url(row: DomainRow) -> dict[str, object]:
    return {"url": _domain_url(row.host.name, row.uuid)}


def _message(text: StrOrPromise, code: int = 200) -> Response:
    return Response({"detail": str(text)}, status=code)


def _created(body: dict[str, Any]) -> Response:
    """A new resource's document, its URL in Location."""
    return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})


# --- Hosts: for those who see host pages (admins and operators). ---


class HostList(ApiView):
    @extend_schema(operation_id="hosts_list", responses=_answers(docs.HostSerializer(many=True)),
                   summary="Enabled hosts")
    def get(self, request: Request) -> Response:
        if not sees_hosts(self.actor):
            raise Http404("No such host.")
        return Response([{"name": host.name, "enabled": host.enabled, "url": reverse("api:host", args=[host.name])}
                         for host in selectors.enabled_hosts()])


class HostDetail(ApiView):
    @extend_schema(responses=_answers(docs.HostDetailSerializer), summary="A host now, as its page shows it")
    def get(self, request: Request, host_name: str) -> Response:
        page = selectors.host_page(user=self.actor, host_name=host_name)
        return Response({
            "name": page.host.name, "facts": dataclasses.asdict(page.facts) if page.facts else None,
            "error": page.error, "pools": [dataclasses.asdict(pool) for pool in page.pools] if page.pools is not None
            else None, "pools_error": page.pools_error,
            "sampled_at": page.sampled_at.isoformat() if page.sampled_at else None})


# --- Domains. ---

LIST_PARAMETERS = [
    *(OpenApiParameter(option, OpenApiTypes.BOOL, description=f"virsh list --{option} (present: on)",
                       allow_blank=True) for option in LIST_OPTIONS),
    OpenApiParameter("host", str, description="Only this host's VMs."),
    OpenApiParameter("q", str, description="Part of the name or title, in any case."),
    OpenApiParameter("sort", str, description="A column (host, name, state, cpu, memory...), - first for descending."),
    OpenApiParameter("page", int), OpenApiParameter("per_page", int),
]


class DomainList(ApiView):
    @extend_schema(operation_id="domains_list", parameters=LIST_PARAMETERS,
                   responses=_answers(docs.DomainListSerializer, 400),
                   summary="VMs, filtered as virsh list filters")
    def get(self, request: Request) -> Response:
        params = request.query_params.copy()
        params.pop("format", None)  # DRF's, choosing the renderer: the API answers JSON whatever it says
        try:
            query = parse_list_query(params)
        except ListQueryError as error:
            return problem(400, str(error))
        return Response(selectors.domain_list(user=self.actor, query=query).as_json(_url))

    @extend_schema(request=docs.DefineRequestSerializer, responses=_answers(docs.DefinedSerializer, 400, success=201),
                   summary="Define a VM from the New VM form's fields")
    def post(self, request: Request) -> Response:
        host_name = str(_body(request).get("host", ""))
        with self.refusal_audited("domain.define"):
            context = selectors.define_context(user=self.actor, host_name=host_name)
        form = DomainDefineForm(_body(request), choices=context.choices, in_use=context.in_use,
                                may_boot_kernel=context.limits.unlimited,
                                may_choose_listen=self.actor.sees_every_domain)
        if not form.is_valid():
            return _form_problem(form)
        uuid = services.domain_define(actor=self.actor, host_name=host_name, spec=form.domain_spec(),
                                      autostart=form.cleaned_data["autostart"], client_addr=self.client_addr)
        return _defined(host_name, uuid)


def _defined(host_name: str, uuid: str) -> Response:
    url = _domain_url(host_name, uuid)
    return Response({"host": host_name, "uuid": uuid, "url": url}, status=status.HTTP_201_CREATED,
                    headers={"Location": url})


class DomainDefineXml(ApiView):
    @extend_schema(request=docs.DefineXmlRequestSerializer,
                   responses=_answers(docs.DefinedSerializer, 400, success=201), summary="Define from XML (admins)")
    def post(self, request: Request) -> Response:
        with self.refusal_audited("domain.define-xml"):
            require_admin(self.actor)  # whoever may not define from XML is not told what the form wants
        form = DomainXmlForm(_body(request))
        host_name = str(_body(request).get("host", ""))
        if not form.is_valid():
            return _form_problem(form)
        try:
            uuid = services.domain_define_xml(actor=self.actor, host_name=host_name, xml=form.cleaned_data["xml"],
                                              client_addr=self.client_addr)
        except virt.VirtError as error:  # libvirt's words about the XML, on its field as the page puts them
            return validation_problem({"xml": [error_message(user=self.actor, error=error)]})
        return _defined(host_name, uuid)


class DomainDetail(ApiView):
    @extend_schema(responses=_answers(docs.DomainDetailSerializer), summary="A VM, as its page shows it")
    def get(self, request: Request, host_name: str, uuid: str) -> Response:
        page = selectors.domain_page(user=self.actor, host_name=host_name, uuid=str(uuid))
        devices = page.devices
        return Response({
            **page.row.as_json(), **_url(page.row), "rights": sorted(page.row.rights),
            "actions": list(page.row.actions),
            "video_models": list(devices.video_models),
            **{name: [dataclasses.asdict(item) for item in getattr(devices, name)]
               for name in ("graphics", "disks", "nics")},
            "snapshot_list": [_snapshot(snapshot) for snapshot in page.snapshots],
        })

    @extend_schema(request=docs.DeleteRequestSerializer, responses=_answers(docs.MessageSerializer, 400, 403),
                   summary="Delete a VM, with those of its own disks named")
    def delete(self, request: Request, host_name: str, uuid: str) -> Response:
        data = docs.DeleteRequestSerializer(data=_body(request))
        data.is_valid(raise_exception=True)
        options = data.validated_data
        return _message(services.domain_delete(
            actor=self.actor, host_name=host_name, uuid=str(uuid), remove_managed_save=options["remove_managed_save"],
            remove_snapshot_metadata=options["remove_snapshot_metadata"], remove_nvram=options["remove_nvram"],
            disk_targets=options.get("disks", ()), client_addr=self.client_addr))


def _snapshot(snapshot: virt.SnapshotRecord) -> dict[str, Any]:
    return {**dataclasses.asdict(snapshot), "created": snapshot.created.isoformat() if snapshot.created else None}


class DomainAgent(ApiView):
    @extend_schema(responses=_answers(docs.GuestInfoSerializer, 409), summary="What the guest agent tells")
    def get(self, request: Request, host_name: str, uuid: str) -> Response:
        info = selectors.domain_guest_info(user=self.actor, host_name=host_name, uuid=str(uuid))
        return Response(dataclasses.asdict(info))


class DomainUsage(ApiView):
    @extend_schema(parameters=[OpenApiParameter("span", str, enum=list(selectors.USAGE_SPANS))],
                   responses=_answers(docs.UsageSerializer, 400), summary="Usage history over a span")
    def get(self, request: Request, host_name: str, uuid: str) -> Response:
        try:
            usage = selectors.usage_series(user=self.actor, host_name=host_name, uuid=str(uuid),
                                           span=request.query_params.get("span", "hour"))
        except selectors.UnknownSpan as error:
            return problem(400, str(error))
        return Response({"span": usage.span, "resolution": usage.resolution, "memory_source": usage.memory_source,
                         "interval": settings.USAGE_INTERVAL_SECONDS, "series": usage.columns})


class DomainAction(ApiView):
    @extend_schema(request=docs.ActionRequestSerializer, responses=_answers(docs.MessageSerializer, 400, 403, 409),
                   parameters=[OpenApiParameter("action", str, OpenApiParameter.PATH,
                                                enum=[action.value for action in virt.Action])],
                   summary="A lifecycle action (start, shutdown, reboot, pause, save...)")
    def post(self, request: Request, host_name: str, uuid: str, action: str) -> Response:
        return _message(services.domain_act(
            actor=self.actor, host_name=host_name, uuid=str(uuid),
            action=one_of(virt.Action, action, _("Unknown action.")),
            mode=one_of(virt.PowerMode, _body(request).get("mode", virt.PowerMode.AUTO), _("Unknown mode.")),
            client_addr=self.client_addr))


class SnapshotList(ApiView):
    @extend_schema(responses=_answers(docs.SnapshotSerializer(many=True)), summary="A VM's snapshots")
    def get(self, request: Request, host_name: str, uuid: str) -> Response:
        page = selectors.domain_page(user=self.actor, host_name=host_name, uuid=str(uuid))
        return Response([_snapshot(snapshot) for snapshot in page.snapshots])

    @extend_schema(request=docs.SnapshotRequestSerializer,
                   responses=_answers(docs.MessageSerializer, 400, 403, 409, success=201), summary="Take a snapshot")
    def post(self, request: Request, host_name: str, uuid: str) -> Response:
        form = SnapshotForm(_body(request))
        if not form.is_valid():
            with self.refusal_audited("snapshot.create", str(uuid)):  # a hidden VM stays a 404
                selectors.domain_get(user=self.actor, host_name=host_name, uuid=str(uuid), right=Right.OPERATE)
            return _form_problem(form)
        return _message(services.snapshot_create(actor=self.actor, host_name=host_name, uuid=str(uuid),
                                                 client_addr=self.client_addr, **form.cleaned_data), 201)


class SnapshotDetail(ApiView):
    @extend_schema(responses=_answers(docs.MessageSerializer, 403, 409), summary="Delete a snapshot")
    def delete(self, request: Request, host_name: str, uuid: str, name: str) -> Response:
        return _message(services.snapshot_delete(actor=self.actor, host_name=host_name, uuid=str(uuid), name=name,
                                                 client_addr=self.client_addr))


class SnapshotRevert(ApiView):
    @extend_schema(request=None, responses=_answers(docs.MessageSerializer, 403, 409), summary="Revert to a snapshot")
    def post(self, request: Request, host_name: str, uuid: str, name: str) -> Response:
        return _message(services.snapshot_revert(actor=self.actor, host_name=host_name, uuid=str(uuid), name=name,
                                                 client_addr=self.client_addr))


class DomainDisplay(ApiView):
    @extend_schema(request=docs.DisplayRequestSerializer, responses=_answers(docs.MessageSerializer, 400, 403, 409),
                   summary="Change the video card and graphics server")
    def put(self, request: Request, host_name: str, uuid: str) -> Response:
        form = DisplayForm(_body(request), may_choose_listen=self.actor.sees_every_domain)
        if not form.is_valid():
            with self.refusal_audited("domain.display", str(uuid)):  # a hidden VM stays a 404
                selectors.domain_get(user=self.actor, host_name=host_name, uuid=str(uuid), right=Right.OPERATE)
            return _form_problem(form)
        return _message(services.domain_update_display(
            actor=self.actor, host_name=host_name, uuid=str(uuid), video_model=form.cleaned_data["video_model"],
            graphics=form.graphics_spec(), client_addr=self.client_addr))


class ConsoleTickets(ApiView):
    @extend_schema(request=docs.ConsoleRequestSerializer, responses=_answers(docs.ConsoleTicketsSerializer, 409),
                   summary="Single-use console tickets, for a client that speaks websockify")
    def post(self, request: Request, host_name: str, uuid: str) -> Response:
        data = docs.ConsoleRequestSerializer(data=_body(request))
        data.is_valid(raise_exception=True)
        try:
            issued = consoles.console_tickets_issue(
                actor=self.actor, host_name=host_name, uuid=str(uuid), origin=request_origin(request._request) or "",
                client_addr=self.client_addr, serial=data.validated_data["serial"],
                api_token=request.auth if isinstance(request.auth, ApiToken) else None)
        except consoles.ConsoleLimitReached as limited:
            return problem(429, str(limited), headers={"Retry-After": str(limited.retry_after)}
                           if limited.retry_after else None)
        return Response({"kind": issued.kind, "url": issued.websocket_url, "tickets": list(issued.tokens),
                         "expires_in": issued.expires_in, "origin": request_origin(request._request) or ""})


# --- Migration jobs: admins only, as the pages. ---


class DomainMigrations(ApiView):
    @extend_schema(request=docs.MigrationRequestSerializer,
                   responses=_answers(docs.MigrationJobSerializer, 400, 409, success=202),
                   summary="Start a migration: answers at once with the job, its URL in Location")
    def post(self, request: Request, host_name: str, uuid: str) -> Response:
        with self.refusal_audited("domain.migrate", str(uuid)):
            require_admin(self.actor)
        form = MigrationForm(_body(request))
        if not form.is_valid():
            return _form_problem(form)
        job = services.migration_start(actor=self.actor, host_name=host_name, uuid=str(uuid),
                                       destination_name=form.cleaned_data["destination"], options=form.options(),
                                       client_addr=self.client_addr)
        body = docs.MigrationJobSerializer(job).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})


class MigrationDetail(ApiView):
    @extend_schema(responses=_answers(docs.MigrationJobSerializer), summary="A migration job's progress")
    def get(self, request: Request, job_id: int) -> Response:
        return Response(docs.MigrationJobSerializer(selectors.migration_job_get(user=self.actor, job_id=job_id)).data)


class MigrationCancel(ApiView):
    @extend_schema(request=None, responses=_answers(docs.MessageSerializer, 409), summary="Cancel a migration")
    def post(self, request: Request, job_id: int) -> Response:
        return _message(services.migration_cancel(actor=self.actor, job_id=job_id, client_addr=self.client_addr))


# --- Audit entries: admins read every one, everybody else its own, as the page words it for them. ---


class AuditList(ApiView):
    @extend_schema(parameters=[OpenApiParameter("page", int)], responses=_answers(docs.AuditPageSerializer, 400),
                   summary="Audit entries, newest first")
    def get(self, request: Request) -> Response:
        paginator = Paginator(audit_list(user=self.actor), 100)
        number = request.query_params.get("page", "1")
        if not number.isdigit() or not 1 <= int(number) <= paginator.num_pages:
            return problem(400, f"page must be a whole number from 1 to {paginator.num_pages}.")
        page = paginator.page(int(number))
        return Response({"count": paginator.count, "page": page.number, "pages": paginator.num_pages,
                         "entries": [{**entry, "message": error_message(user=self.actor, error=entry["message"])}
                                     for entry in docs.AuditEntrySerializer(page.object_list, many=True).data]})


# --- Grants and define allowances: admins only. ---


class GrantList(ApiView):
    @extend_schema(responses=_answers(docs.GrantSerializer(many=True)), summary="Grants (admins)")
    def get(self, request: Request) -> Response:
        require_admin(self.actor)
        grants = Grant.objects.select_related("host", "user", "group").order_by("host__name", "domain_name", "pk")
        return Response(docs.GrantSerializer(grants, many=True).data)

    @extend_schema(request=docs.GrantSerializer, responses=_answers(docs.GrantSerializer, 400, success=201),
                   summary="Grant a user or a group rights on a VM (admins)")
    def post(self, request: Request) -> Response:
        with self.refusal_audited("grant.save"):
            require_admin(self.actor)
        data = docs.GrantSerializer(data=_body(request))
        data.is_valid(raise_exception=True)
        given = data.validated_data
        grant = Grant(
            host=_named(Host, name=given["host"]["name"]), domain_uuid=given["domain_uuid"],
            user=_named(User, username=given["user"]["username"]) if given.get("user") else None,
            group=_named(Group, name=given["group"]["name"]) if given.get("group") else None,
            can_operate=given["can_operate"], can_console=given["can_console"], owner=given["owner"])
        services.grant_save(actor=self.actor, grant=grant, client_addr=self.client_addr)
        return Response(docs.GrantSerializer(grant).data, status=status.HTTP_201_CREATED)


def _named(model: type[Any], **lookup: str) -> Any:
    """The host, user or group an admin named, or a field error saying there is none."""
    found = model.objects.filter(**lookup).first()
    if found is None:
        field = "host" if model is Host else model.__name__.lower()
        raise InputError({field: [_("There is no %(kind)s %(name)s.") % {"kind": model._meta.verbose_name,
                                                                         "name": next(iter(lookup.values()))}]})
    return found


class GrantDetail(ApiView):
    @extend_schema(responses=_answers(docs.MessageSerializer), summary="Revoke a grant (admins)")
    def delete(self, request: Request, grant_id: int) -> Response:
        with self.refusal_audited("grant.revoke"):
            require_admin(self.actor)
        grant = Grant.objects.select_related("host", "user", "group").filter(pk=grant_id).first()
        if grant is None:
            raise Http404("No such grant.")
        services.grant_revoke(actor=self.actor, grant=grant, client_addr=self.client_addr)
        return _message(_("Grant revoked."))


class AllowanceList(ApiView):
    @extend_schema(operation_id="allowances_list", responses=_answers(docs.AllowanceSerializer(many=True)),
                   summary="Define allowances (admins)")
    def get(self, request: Request) -> Response:
        require_admin(self.actor)
        allowances = DefineAllowance.objects.select_related("user", "group").prefetch_related("hosts", "pools__host")
        return Response([_allowance(allowance) for allowance in allowances.order_by("pk")])

    @extend_schema(request=docs.AllowanceSerializer, responses=_answers(docs.AllowanceSerializer, 400, success=201),
                   summary="Let a user or a group define VMs, within limits (admins)")
    def post(self, request: Request) -> Response:
        with self.refusal_audited("allowance.create"):
            require_admin(self.actor)
        return Response(_allowance_saved(self, request, DefineAllowance()), status=status.HTTP_201_CREATED)


class AllowanceDetail(ApiView):
    @extend_schema(responses=_answers(docs.AllowanceSerializer), summary="A define allowance (admins)")
    def get(self, request: Request, allowance_id: int) -> Response:
        require_admin(self.actor)
        return Response(_allowance(_allowance_or_404(allowance_id)))

    @extend_schema(request=docs.AllowanceSerializer, responses=_answers(docs.AllowanceSerializer, 400),
                   summary="Change a define allowance, all its fields at once (admins)")
    def put(self, request: Request, allowance_id: int) -> Response:
        with self.refusal_audited("allowance.update"):
            require_admin(self.actor)
        return Response(_allowance_saved(self, request, _allowance_or_404(allowance_id)))

    @extend_schema(responses=_answers(docs.MessageSerializer), summary="Take a define allowance away (admins)")
    def delete(self, request: Request, allowance_id: int) -> Response:
        with self.refusal_audited("allowance.delete"):
            require_admin(self.actor)
        people.allowance_delete(actor=self.actor, allowance=_allowance_or_404(allowance_id),
                                client_addr=self.client_addr)
        return _message(_("Allowance removed."))


def _allowance_saved(view: ApiView, request: Request, allowance: DefineAllowance) -> dict[str, object]:
    """The allowance as the request describes it, saved through the allowance pages' own service."""
    data = docs.AllowanceSerializer(data=_body(request))
    data.is_valid(raise_exception=True)
    given = data.validated_data
    allowance.user = _named(User, username=given["user"]["username"]) if given.get("user") else None
    allowance.group = _named(Group, name=given["group"]["name"]) if given.get("group") else None
    for limit in ("max_vms", "max_vcpus", "max_memory_mib", "max_storage_gib"):
        setattr(allowance, limit, given[limit])
    people.allowance_save(actor=view.actor, allowance=allowance,
                          hosts=[_named(Host, name=name) for name in given["hosts"]],
                          pools=[_registered_pool(text) for text in given["pools"]], client_addr=view.client_addr)
    return _allowance(allowance)


def _allowance_or_404(allowance_id: int) -> DefineAllowance:
    allowance = DefineAllowance.objects.select_related("user", "group").filter(pk=allowance_id).first()
    if allowance is None:
        raise Http404("No such allowance.")
    return allowance


def _registered_pool(text: str) -> StoragePool:
    host_name, _slash, name = text.partition("/")
    pool = StoragePool.objects.filter(host__name=host_name, name=name).first()
    if pool is None:
        raise InputError({"pools": [_("There is no registered pool %(pool)s (HOST/POOL).") % {"pool": text}]})
    return pool


def _allowance(allowance: DefineAllowance) -> dict[str, object]:
    return {
        "id": allowance.pk, "user": allowance.user.username if allowance.user else None,
        "group": allowance.group.name if allowance.group else None,
        "hosts": [host.name for host in allowance.hosts.all()],
        "max_vms": allowance.max_vms, "max_vcpus": allowance.max_vcpus, "max_memory_mib": allowance.max_memory_mib,
        "pools": [f"{pool.host.name}/{pool.name}" for pool in allowance.pools.all()],
        "max_storage_gib": allowance.max_storage_gib,
    }

