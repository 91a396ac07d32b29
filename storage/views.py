"""Storage pages: a host's pools, a pool's volumes, a volume; uploads in chunks (static/vmportal/upload.js)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from audit.services import refuse
from domains import virt
from domains.access import is_admin
from domains.errors import error_message
from domains.views import _on_form, _posted, _run, client_addr
from domains.virt.storage import PoolAction

from . import selectors, services
from .forms import PoolDefineForm, UploadStartForm, VolumeCreateForm, VolumeResizeForm
from .models import UploadSession

if TYPE_CHECKING:
    from domains.views import AuthedRequest

T = TypeVar("T")

# The largest chunk a POST may carry (upload.js sends 8 MiB; nginx takes 10 MiB bodies: deploy/nginx).
CHUNK_LIMIT = 9 * 1024 * 1024


def _page_or_refusal(request: AuthedRequest, action: str, host_name: str, read: Callable[[], T]) -> T:
    """What a GET/POST page reads; when the user may not see it, a POST is audited as denied (then the 404)."""
    try:
        return read()
    except Http404:
        if request.method == "POST":
            refuse(actor=request.user, action=action, client_addr=client_addr(request),
                   host=selectors.audit_host(host_name))
        raise


@login_required
@require_http_methods(["GET", "POST"])
def pool_list(request: AuthedRequest, host_name: str) -> HttpResponse:
    """Every pool of the host the user sees; admins define a directory pool here."""
    listing = _page_or_refusal(request, "pool.define", host_name,
                               lambda: selectors.pool_list(user=request.user, host_name=host_name))
    form = PoolDefineForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        defined = _on_form(form, lambda: services.pool_define(
            actor=request.user, host_name=host_name, client_addr=client_addr(request), **form.cleaned_data),
            user=request.user)
        if defined is not None:
            messages.success(request, _("Pool %(name)s defined and started.") % {"name": defined.name})
            return redirect("storage:pool", host_name, defined.name)
    return render(request, "storage/pools.html", {"listing": listing, "form": form},
                  status=400 if form.errors else 200)


def _pool_page(request: AuthedRequest, host_name: str, pool: str, action: str) -> selectors.PoolPage:
    return _page_or_refusal(request, action, host_name,
                            lambda: selectors.pool_page(user=request.user, host_name=host_name, pool=pool))


@login_required
@require_http_methods(["GET", "POST"])
def pool_detail(request: AuthedRequest, host_name: str, pool: str) -> HttpResponse:
    """The pool with its volumes, the new-volume form (POST) and the upload form."""
    page = _pool_page(request, host_name, pool, "volume.create")
    form = VolumeCreateForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        volume = _on_form(form, lambda: services.volume_create(
            actor=request.user, host_name=host_name, pool=pool, name=form.cleaned_data["name"],
            size_bytes=form.size_bytes(), volume_format=form.cleaned_data["format"], client_addr=client_addr(request)),
            user=request.user)
        if volume is not None:
            messages.success(request, _("Volume %(name)s created.") % {"name": volume.name})
            return redirect("storage:pool", host_name, pool)
    if request.htmx and request.htmx.target == "volumes":
        return render(request, "storage/pool.html#volumes", {"page": page})
    return render(request, "storage/pool.html", {"page": page, "form": form, "upload_form": UploadStartForm()},
                  status=400 if form.errors else 200)


def _back_to_pool(request: AuthedRequest, host_name: str, pool: str) -> HttpResponse:
    """After an action the pool's page, with the message; htmx (a confirmed button) is told to go there."""
    url = reverse("storage:pool", args=[host_name, pool])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_POST
def pool_action(request: AuthedRequest, host_name: str, pool: str) -> HttpResponse:
    try:
        action = PoolAction(request.POST.get("action", ""))
    except ValueError:
        return HttpResponseBadRequest(_("Unknown pool action."))
    _run(request, lambda: services.pool_act(actor=request.user, host_name=host_name, pool=pool, action=action,
                                            client_addr=client_addr(request)))
    return _back_to_pool(request, host_name, pool)


@login_required
@require_http_methods(["GET", "POST"])
def volume_detail(request: AuthedRequest, host_name: str, pool: str, name: str) -> HttpResponse:
    """One volume: its size and format, the resize form (POST: grow only) and delete."""
    _host, scope, volume = _page_or_refusal(request, "volume.resize", host_name,
                                            lambda: selectors.storage_volume(request.user, host_name, pool, name))
    form = VolumeResizeForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        message = _on_form(form, lambda: services.volume_resize(
            actor=request.user, host_name=host_name, pool=pool, name=name, size_bytes=form.size_bytes(),
            client_addr=client_addr(request)), user=request.user)
        if message is not None:
            messages.success(request, message)
            return redirect("storage:pool", host_name, pool)
    return render(request, "storage/volume.html", {
        "host_name": host_name, "volume": volume, "form": form,
        "mine": scope.may_change(volume.key), "may_download": is_admin(request.user),
    }, status=400 if form.errors else 200)


@login_required
@require_POST
def volume_delete(request: AuthedRequest, host_name: str, pool: str, name: str) -> HttpResponse:
    _run(request, lambda: services.volume_delete(actor=request.user, host_name=host_name, pool=pool, name=name,
                                                 client_addr=client_addr(request)))
    return _back_to_pool(request, host_name, pool)


@login_required
@require_GET
def volume_download(request: AuthedRequest, host_name: str, pool: str, name: str) -> HttpResponseBase:
    """Admins: the volume's bytes as a file, streamed from libvirt as they are read; a refusal goes back to the
    volume's page with libvirt's reason."""
    try:
        volume, chunks = services.volume_download(actor=request.user, host_name=host_name, pool=pool, name=name,
                                                  client_addr=client_addr(request))
    except virt.VirtError as error:
        messages.error(request, error_message(user=request.user, error=error))
        return redirect("storage:volume", host_name, pool, name)
    response = StreamingHttpResponse(_read_in_a_thread(chunks), content_type="application/octet-stream")
    response["Content-Length"] = str(volume.capacity_bytes)
    response["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(volume.name)}"
    return response


async def _read_in_a_thread(chunks: Generator[bytes]) -> AsyncIterator[bytes]:
    """The chunks, each read in a worker thread: under ASGI Django reads a plain iterator whole into memory
    before it sends a byte, and a volume may take gigabytes. A client that goes away closes the stream."""
    read = sync_to_async(lambda: next(chunks, b""), thread_sensitive=False)
    try:
        while chunk := await read():
            yield chunk
    finally:
        await sync_to_async(chunks.close, thread_sensitive=False)()


# --- Uploads: JSON for upload.js. ---


def _upload_state(session: UploadSession) -> dict[str, object]:
    return {"id": session.pk, "volume": session.volume, "received": session.received_bytes,
            "total": session.total_bytes, "finished": session.finished, "abandoned": session.abandoned,
            "chunk_url": reverse("storage:upload-chunk", args=[session.pk]),
            "status_url": reverse("storage:upload", args=[session.pk]),
            "cancel_url": reverse("storage:upload-cancel", args=[session.pk])}


def _refused(request: AuthedRequest, error: ValidationError | virt.VirtError) -> JsonResponse:
    """A refusal in words for the upload form: by field where it names one."""
    if isinstance(error, virt.VirtError):
        return JsonResponse({"errors": {"__all__": [error_message(user=request.user, error=error)]}}, status=400)
    if hasattr(error, "error_dict"):
        return JsonResponse({"errors": {field: [str(m) for e in errors for m in e.messages]
                                        for field, errors in error.error_dict.items()}}, status=400)
    return JsonResponse({"errors": {"__all__": error.messages}}, status=400)


@login_required
@require_POST
def upload_start(request: AuthedRequest, host_name: str, pool: str) -> JsonResponse:
    """Creates the volume for a file of `size_bytes` and the session its chunks go to."""
    form = UploadStartForm(request.POST)
    if not form.is_valid():
        return JsonResponse({"errors": {field: list(errors) for field, errors in form.errors.items()}}, status=400)
    try:
        session = services.upload_start(actor=request.user, host_name=host_name, pool=pool,
                                        name=form.cleaned_data["name"], size_bytes=form.cleaned_data["size_bytes"],
                                        client_addr=client_addr(request))
    except (ValidationError, virt.VirtError) as error:
        return _refused(request, error)
    return JsonResponse(_upload_state(session), status=201)


@login_required
@require_GET
def upload_status(request: AuthedRequest, session_id: int) -> JsonResponse:
    """Where the upload stands: the browser resumes from `received` after a dropped connection."""
    return JsonResponse(_upload_state(selectors.upload_session_get(user=request.user, session_id=session_id)))


@login_required
@require_POST
def upload_chunk(request: AuthedRequest, session_id: int) -> JsonResponse:
    """The request body is the file's bytes from ?offset= on (one missing or not where the upload stands: 409)."""
    given = request.GET.get("offset", "")
    offset = int(given) if given.isdigit() else -1
    data = request.read(CHUNK_LIMIT + 1)
    if len(data) > CHUNK_LIMIT:
        return JsonResponse({"error": _("Chunks are at most %(limit)s bytes.") % {"limit": CHUNK_LIMIT}}, status=413)
    try:
        session = services.upload_chunk(actor=request.user, session_id=session_id, offset=offset, data=data,
                                        client_addr=client_addr(request))
    except services.ChunkOutOfPlace as error:
        return JsonResponse({"error": str(error), **_upload_state(error.session)}, status=409)
    except services.UploadAbandoned as error:
        return JsonResponse({"error": str(error)}, status=410)
    except virt.VirtError as error:
        return JsonResponse({"error": error_message(user=request.user, error=error)}, status=502)
    return JsonResponse(_upload_state(session))


@login_required
@require_POST
def upload_cancel(request: AuthedRequest, session_id: int) -> JsonResponse:
    try:
        message = services.upload_cancel(actor=request.user, session_id=session_id, client_addr=client_addr(request))
    except (ValidationError, virt.VirtError) as error:
        return _refused(request, error)
    return JsonResponse({"message": message})
