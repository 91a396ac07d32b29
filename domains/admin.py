"""Django's admin site serves admins for users, groups and grants; grant changes go through services."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from vmportal import clients

from . import services
from .models import DefineAllowance, Grant, OwnedVolume, StoragePool


class GrantForm(forms.ModelForm[Grant]):
    """Says in the form, not in a crash, when the VM does not exist on the chosen host."""

    class Meta:
        model = Grant
        fields = ["host", "domain_uuid", "user", "group", "can_operate", "can_console", "owner"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("host") and cleaned.get("domain_uuid"):
            services.grant_check(Grant(host=cleaned["host"], domain_uuid=cleaned["domain_uuid"]))
        return cleaned


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin[Grant]):
    form = GrantForm
    list_display = ("domain_name", "host", "domain_uuid", "user", "group", "can_operate", "can_console", "owner")
    list_filter = ("host", "can_operate", "can_console", "owner")
    search_fields = ("domain_name", "domain_uuid", "user__username", "group__name")

    def save_model(self, request: HttpRequest, obj: Grant, form: Any, change: bool) -> None:
        services.grant_save(actor=request.user, grant=obj, client_addr=clients.request_client_address(request))  # type: ignore[arg-type]

    def delete_model(self, request: HttpRequest, obj: Grant) -> None:
        services.grant_revoke(actor=request.user, grant=obj, client_addr=clients.request_client_address(request))  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for grant in queryset:
            self.delete_model(request, grant)


# Host is not here: hosts are registered and edited on the Hosts page, through the services (audit, the
# connection pool); the admin site would save them behind the services' back.


@admin.register(DefineAllowance)
class DefineAllowanceAdmin(admin.ModelAdmin[DefineAllowance]):
    list_display = ("user", "group", "max_vms", "max_vcpus", "max_memory_mib", "max_storage_gib")
    filter_horizontal = ("hosts", "pools")


class StoragePoolForm(forms.ModelForm[StoragePool]):
    class Meta:
        model = StoragePool
        fields = ["host", "name", "shared_images"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("host") and cleaned.get("name"):
            services.storage_pool_check(host=cleaned["host"], name=cleaned["name"])
        return cleaned


@admin.register(StoragePool)
class StoragePoolAdmin(admin.ModelAdmin[StoragePool]):
    form = StoragePoolForm
    list_display = ("name", "host", "shared_images")
    list_filter = ("host", "shared_images")


@admin.register(OwnedVolume)
class OwnedVolumeAdmin(admin.ModelAdmin[OwnedVolume]):
    """Read-only: volumes are recorded when the dashboard creates them and forgotten when it deletes them."""

    list_display = ("name", "pool", "host", "owner", "capacity_bytes", "created_at")
    list_filter = ("host", "pool")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
