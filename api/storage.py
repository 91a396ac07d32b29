"""A host's storage through the API: pools, their volumes, uploads in chunks and (admins) downloads.

The same selectors (storage.selectors, the storage gate) and services as the storage pages, with their forms,
so a tenant sees only its allowance's pools, its own volumes and the shared images, and a refusal reads the
page's words. Host paths are for admins only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from domains import virt
from domains.access import is_admin, require_admin
from domains.virt.storage import PoolAction
from storage import selectors, services
from storage.forms import PoolDefineForm, UploadStartForm, VolumeCreateForm, VolumeResizeForm
from storage.models import UploadSession
from storage.views import CHUNK_LIMIT, _read_in_a_thread

from . import serializers as docs
from .problems import CONTENT_TYPE as PROBLEM_TYPE
from .problems import one_of, problem
from .views import ApiView, _answers, _body, _created, _form_problem, _message

if TYPE_CHECKING:
    from rest_framework.request import Request

    from accounts.models import User


class PoolSerializer(docs.PoolCapacitySerializer):
    kind = serializers.CharField(help_text="libvirt's pool type: dir, logical, netfs...")
    autostart = serializers.BooleanField()
    url = serializers.CharField()


class PoolListSerializer(serializers.Serializer):
    pools = PoolSerializer(many=True)
    error = serializers.CharField(allow_blank=True, help_text="Why the pools could not be read; empty when they were.")
    may_define = serializers.BooleanField()


class VolumeSerializer(serializers.Serializer):
    pool = serializers.CharField()
    name = serializers.CharField()
    path = serializers.CharField(allow_blank=True, help_text="The host path: for admins only, empty otherwise.")
    capacity_bytes = serializers.IntegerField()
    allocation_bytes = serializers.IntegerField()
    format = serializers.CharField(allow_blank=True)
    mine = serializers.BooleanField(help_text="The caller may resize and delete it.")
    url = serializers.CharField()


class UploadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    volume = serializers.CharField()
    received = serializers.IntegerField(help_text="Bytes received: the offset of the next chunk.")
    total = serializers.IntegerField()
    finished = serializers.BooleanField()
    abandoned = serializers.BooleanField()
    url = serializers.CharField()
    chunk_url = serializers.CharField(help_text="PUT the bytes from ?offset= on, as application/octet-stream.")
    cancel_url = serializers.CharField()


class PoolDetailSerializer(PoolSerializer):
    volumes = VolumeSerializer(many=True)
    uploads = UploadSerializer(many=True, help_text="The caller's unfinished uploads into it.")
    may_create = serializers.BooleanField()
    may_manage = serializers.BooleanField()
    may_download = serializers.BooleanField()


class PoolDefineRequestSerializer(serializers.Serializer):
    name = serializers.CharField()
    path = serializers.CharField(help_text="The directory on the host; it is made when missing.")


class VolumeCreateRequestSerializer(serializers.Serializer):
    name = serializers.CharField()
    size_gib = serializers.DecimalField(max_digits=9, decimal_places=3)
    format = serializers.ChoiceField(choices=["qcow2", "raw"])


class VolumeResizeRequestSerializer(serializers.Serializer):
    size_gib = serializers.DecimalField(max_digits=9, decimal_places=3, help_text="Larger than now: volumes only grow.")


class UploadStartRequestSerializer(serializers.Serializer):
    name = serializers.CharField()
    size_bytes = serializers.IntegerField(help_text="The whole file's.")


def _pool(host_name: str, pool: virt.PoolCapacity) -> dict[str, Any]:
    return {"name": pool.name, "active": pool.active, "capacity_bytes": pool.capacity_bytes,
            "allocation_bytes": pool.allocation_bytes, "available_bytes": pool.available_bytes, "kind": pool.kind,
            "autostart": pool.autostart, "url": reverse("api:pool", args=[host_name, pool.name])}


def _volume(user: User, host_name: str, volume: virt.VolumeInfo, mine: bool) -> dict[str, Any]:
    return {"pool": volume.pool, "name": volume.name, "path": volume.path if is_admin(user) else "",
            "capacity_bytes": volume.capacity_bytes, "allocation_bytes": volume.allocation_bytes,
            "format": volume.format, "mine": mine, "url": reverse("api:volume", args=[host_name, volume.pool,
                                                                                     volume.name])}


def _upload(session: UploadSession) -> dict[str, Any]:
    return {"id": session.pk, "volume": session.volume, "received": session.received_bytes,
            "total": session.total_bytes, "finished": session.finished, "abandoned": session.abandoned,
            "url": reverse("api:upload", args=[session.pk]),
            "chunk_url": reverse("api:upload-chunk", args=[session.pk]),
            "cancel_url": reverse("api:upload-cancel", args=[session.pk])}


class PoolList(ApiView):
    @extend_schema(operation_id="pools_list", responses=_answers(PoolListSerializer),
                   summary="The host's pools the caller sees")
    def get(self, request: Request, host_name: str) -> Response:
        listing = selectors.pool_list(user=self.actor, host_name=host_name)
        return Response({"pools": [_pool(host_name, pool) for pool in listing.pools], "error": listing.error,
                         "may_define": listing.may_define})

    @extend_schema(request=PoolDefineRequestSerializer, responses=_answers(PoolSerializer, 400, success=201),
                   summary="Define, build and start a directory pool (admins)")
    def post(self, request: Request, host_name: str) -> Response:
        with self.refusal_audited("pool.define"):
            require_admin(self.actor)  # whoever may not define is not told what the form wants
        form = PoolDefineForm(_body(request))
        if not form.is_valid():
            return _form_problem(form)
        defined = services.pool_define(actor=self.actor, host_name=host_name, client_addr=self.client_addr,
                                       **form.cleaned_data)
        return _created(_pool(host_name, defined))


class PoolDetail(ApiView):
    @extend_schema(responses=_answers(PoolDetailSerializer), summary="A pool with the volumes the caller sees")
    def get(self, request: Request, host_name: str, pool: str) -> Response:
        page = selectors.pool_page(user=self.actor, host_name=host_name, pool=pool)
        return Response({
            **_pool(host_name, page.pool),
            "volumes": [_volume(self.actor, host_name, row.volume, row.mine) for row in page.volumes],
            "uploads": [_upload(session) for session in page.uploads],
            "may_create": page.may_create, "may_manage": page.may_manage, "may_download": page.may_download})


class PoolActionView(ApiView):
    @extend_schema(request=None, responses=_answers(docs.MessageSerializer, 400, 409),
                   parameters=[OpenApiParameter("action", str, OpenApiParameter.PATH,
                                                enum=[action.value for action in PoolAction])],
                   summary="Start, stop, refresh or (un)mark a pool to start with the host (admins and operators)")
    def post(self, request: Request, host_name: str, pool: str, action: str) -> Response:
        return _message(services.pool_act(actor=self.actor, host_name=host_name, pool=pool,
                                          action=one_of(PoolAction, action, _("Unknown pool action.")),
                                          client_addr=self.client_addr))


class VolumeList(ApiView):
    @extend_schema(operation_id="volumes_list", responses=_answers(VolumeSerializer(many=True)),
                   summary="The pool's volumes the caller sees")
    def get(self, request: Request, host_name: str, pool: str) -> Response:
        page = selectors.pool_page(user=self.actor, host_name=host_name, pool=pool)
        return Response([_volume(self.actor, host_name, row.volume, row.mine) for row in page.volumes])

    @extend_schema(request=VolumeCreateRequestSerializer, responses=_answers(VolumeSerializer, 400, success=201),
                   summary="Create a volume (a tenant: in its allowance's pools, within its quota)")
    def post(self, request: Request, host_name: str, pool: str) -> Response:
        form = VolumeCreateForm(_body(request))
        if refused := self.refused_input(form, "volume.create",
                                         lambda: selectors.storage_pool(self.actor, host_name, pool)):
            return refused
        volume = services.volume_create(actor=self.actor, host_name=host_name, pool=pool,
                                        name=form.cleaned_data["name"], size_bytes=form.size_bytes(),
                                        volume_format=form.cleaned_data["format"], client_addr=self.client_addr)
        return _created(_volume(self.actor, host_name, volume, mine=True))


class VolumeDetail(ApiView):
    @extend_schema(responses=_answers(VolumeSerializer), summary="A volume, as libvirt has it now")
    def get(self, request: Request, host_name: str, pool: str, name: str) -> Response:
        _host, scope, volume = selectors.storage_volume(self.actor, host_name, pool, name)
        return Response(_volume(self.actor, host_name, volume, scope.may_change(volume.key)))

    @extend_schema(request=VolumeResizeRequestSerializer, responses=_answers(docs.MessageSerializer, 400),
                   summary="Grow a volume (a tenant: its own, within its quota)")
    def patch(self, request: Request, host_name: str, pool: str, name: str) -> Response:
        form = VolumeResizeForm(_body(request))
        if refused := self.refused_input(form, "volume.resize",
                                         lambda: selectors.storage_volume(self.actor, host_name, pool, name)):
            return refused
        return _message(services.volume_resize(actor=self.actor, host_name=host_name, pool=pool, name=name,
                                               size_bytes=form.size_bytes(), client_addr=self.client_addr))

    @extend_schema(request=None, responses=_answers(docs.MessageSerializer, 409),
                   summary="Delete a volume no machine uses (a tenant: its own)")
    def delete(self, request: Request, host_name: str, pool: str, name: str) -> Response:
        return _message(services.volume_delete(actor=self.actor, host_name=host_name, pool=pool, name=name,
                                               client_addr=self.client_addr))


HYPERVISOR_REFUSED = OpenApiResponse(docs.ProblemSerializer, description="The hypervisor refused, in its words.")
# The bytes, or the problems any route may answer and libvirt's refusal.
DOWNLOAD_ANSWERS = {(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY, description="The bytes."),
                    **{key: answer for key, answer in _answers(None).items() if key != 200},
                    (502, PROBLEM_TYPE): HYPERVISOR_REFUSED}


class VolumeDownload(ApiView):
    @extend_schema(responses=DOWNLOAD_ANSWERS, summary="A volume's bytes, streamed from libvirt (admins)")
    def get(self, request: Request, host_name: str, pool: str, name: str) -> StreamingHttpResponse:
        volume, chunks = services.volume_download(actor=self.actor, host_name=host_name, pool=pool, name=name,
                                                  client_addr=self.client_addr)
        response = StreamingHttpResponse(_read_in_a_thread(chunks), content_type="application/octet-stream")
        response["Content-Length"] = str(volume.capacity_bytes)
        response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(volume.name)}"
        return response


# --- Uploads: as the pool page's upload.js does them, a session per file and chunks at its offset. ---


class UploadStart(ApiView):
    @extend_schema(request=UploadStartRequestSerializer, responses=_answers(UploadSerializer, 400, success=201),
                   summary="Start (or resume) uploading a file into a new raw volume")
    def post(self, request: Request, host_name: str, pool: str) -> Response:
        form = UploadStartForm(_body(request))
        if refused := self.refused_input(form, "volume.upload",
                                         lambda: selectors.storage_pool(self.actor, host_name, pool)):
            return refused
        session = services.upload_start(actor=self.actor, host_name=host_name, pool=pool,
                                        name=form.cleaned_data["name"], size_bytes=form.cleaned_data["size_bytes"],
                                        client_addr=self.client_addr)
        return _created(_upload(session))


class UploadDetail(ApiView):
    @extend_schema(responses=_answers(UploadSerializer), summary="Where an upload stands: send from `received` on")
    def get(self, request: Request, session_id: int) -> Response:
        return Response(_upload(selectors.upload_session_get(user=self.actor, session_id=session_id)))


class UploadChunk(ApiView):
    @extend_schema(request={"application/octet-stream": OpenApiTypes.BINARY},
                   parameters=[OpenApiParameter("offset", int, required=True,
                                                description="Where the upload stands (its `received`).")],
                   responses={**_answers(UploadSerializer, 409), **{(code, PROBLEM_TYPE): OpenApiResponse(
                       docs.ProblemSerializer, description=text) for code, text in (
                       (410, "The upload got no data for too long; its partial volume was deleted."),
                       (413, f"Chunks are at most {CHUNK_LIMIT} bytes."))}, (502, PROBLEM_TYPE): HYPERVISOR_REFUSED},
                   summary="Write the bytes from ?offset= on (409, with where it stands, when that is elsewhere)")
    def put(self, request: Request, session_id: int) -> Response:
        given = request.query_params.get("offset", "")
        # The raw body, never parsed: DRF's parsers would read it whole whatever its size.
        data = request._request.read(CHUNK_LIMIT + 1)
        if len(data) > CHUNK_LIMIT:
            return problem(413, _("Chunks are at most %(limit)s bytes.") % {"limit": CHUNK_LIMIT})
        try:
            session = services.upload_chunk(actor=self.actor, session_id=session_id,
                                            offset=int(given) if given.isdigit() else -1, data=data,
                                            client_addr=self.client_addr)
        except services.ChunkOutOfPlace as error:
            return problem(409, str(error))
        except services.UploadAbandoned as error:
            return problem(410, str(error))
        return Response(_upload(session))

    post = put  # upload.js POSTs its chunks; a client may do either


class UploadCancel(ApiView):
    @extend_schema(request=None, responses=_answers(docs.MessageSerializer, 400),
                   summary="Cancel an upload, deleting its partial volume")
    def post(self, request: Request, session_id: int) -> Response:
        return _message(services.upload_cancel(actor=self.actor, session_id=session_id, client_addr=self.client_addr))

