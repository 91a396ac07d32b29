from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import User


@admin.register(User)
class VmportalUserAdmin(UserAdmin):
    list_display = ("username", "email", "role", "is_active")
    list_filter = ("role", "is_active", "groups")
    fieldsets = (*(UserAdmin.fieldsets or ()), ("Dashboard", {"fields": ("role",)}))
    add_fieldsets = (*UserAdmin.add_fieldsets, ("Dashboard", {"fields": ("role",)}))
