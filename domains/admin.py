"""Django's admin site serves admins for users, groups and grants; grant changes go through services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from vmportal import clients

from . import services
from .models import AuditEntry, DefineAllowance, Grant, Host


@admin.register(Grant)
class GrantAdmin(admin.ModelAdmin[Grant]):
    list_display = ("host", "domain_uuid", "user", "group", "can_operate", "can_console")
    list_filter = ("host", "can_operate", "can_console")
    search_fields = ("domain_uuid", "user__username", "group__name")

    def save_model(self, request: HttpRequest, obj: Grant, form: Any, change: bool) -> None:
        services.grant_save(actor=request.user, grant=obj, client_addr=clients.request_client_address(request))  # type: ignore[arg-type]

    def delete_model(self, request: HttpRequest, obj: Grant) -> None:
        services.grant_revoke(actor=request.user, grant=obj, client_addr=clients.request_client_address(request))  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for grant in queryset:
            self.delete_model(request, grant)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin[AuditEntry]):
    list_display = ("created_at", "actor_name", "action", "host_name", "domain_name", "result")
    list_filter = ("result", "action")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


admin.site.register(Host)


@admin.register(DefineAllowance)
class DefineAllowanceAdmin(admin.ModelAdmin[DefineAllowance]):
    list_display = ("user", "group", "max_vms", "max_vcpus", "max_memory_mib")
    filter_horizontal = ("hosts",)
