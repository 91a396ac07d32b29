from typing import Any

from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse

from .models import OidcIdentity, User


@admin.register(User)
class VmportalUserAdmin(UserAdmin):
    list_display = ("username", "email", "role", "is_active")
    list_filter = ("role", "is_active", "groups")
    fieldsets = (*(UserAdmin.fieldsets or ()), ("Dashboard", {"fields": ("role",)}))
    add_fieldsets = (*UserAdmin.add_fieldsets, ("Dashboard", {"fields": ("role",)}))


@admin.register(OidcIdentity)
class OidcIdentityAdmin(admin.ModelAdmin[OidcIdentity]):
    """Links a provider's subject to an existing account (a first sign-in never takes one over by its name)."""

    list_display = ("user", "subject", "issuer")
    search_fields = ("user__username", "subject")
    raw_id_fields = ("user",)


def _admin_site_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """The admin site signs in through the portal's login only: its own form would skip the throttle and the
    second factor. Someone signed in who is no admin is told the site does not exist, as everywhere else."""
    if request.user.is_authenticated:
        raise Http404("Not found.")
    return redirect_to_login(request.GET.get(REDIRECT_FIELD_NAME) or reverse("admin:index"))


admin.site.login = _admin_site_login  # type: ignore[method-assign]
