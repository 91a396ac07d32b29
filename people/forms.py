from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from domains.models import DefineAllowance, Grant

from .selectors import VmChoice

# One line each on what a right allows; viewing comes with every share.
RIGHTS_HELP = {
    "can_operate": _("start, shut down, reboot, pause, resume, save, snapshot and change its hardware; "
                     "not delete it."),
    "can_console": _("open its screen and keyboard in a browser tab."),
    "owner": _("may delete it and its own disks; it counts against the tenant's define allowance."),
}


def put_errors(form: forms.BaseForm, error: ValidationError) -> None:
    """A service's refusal on the form: beside the field it names, else above the form."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, messages in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages)


def _members() -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        User.objects.order_by("username"), required=False, widget=forms.CheckboxSelectMultiple, label=_("Members"))


def _groups() -> forms.ModelMultipleChoiceField:
    return forms.ModelMultipleChoiceField(
        Group.objects.order_by("name"), required=False, widget=forms.CheckboxSelectMultiple, label=_("Groups"))


class UserCreateForm(forms.Form):
    username = forms.CharField(label=_("Username"), max_length=150)
    password = forms.CharField(label=_("Password"), widget=forms.PasswordInput(render_value=True),
                               strip=False, help_text=_("At least 8 characters, not a common one."))
    role = forms.ChoiceField(label=_("Role"), choices=User.Role.choices, initial=User.Role.TENANT)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["groups"] = _groups()


class UserEditForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"), choices=User.Role.choices)
    is_active = forms.BooleanField(label=_("Active (may sign in)"), required=False)
    password = forms.CharField(label=_("New password"), widget=forms.PasswordInput, strip=False, required=False,
                               help_text=_("Leave empty to keep the current one."))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["groups"] = _groups()


class GroupForm(forms.ModelForm[Group]):
    class Meta:
        model = Group
        fields = ["name"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["members"] = _members()
        if self.instance.pk:
            self.fields["members"].initial = list(self.instance.user_set.values_list("pk", flat=True))


class GrantForm(forms.ModelForm[Grant]):
    """Whom to share a VM with, and how far: the VM page's Share form."""

    class Meta:
        model = Grant
        fields = ["user", "group", "can_operate", "can_console", "owner"]
        labels = {"can_operate": _("Operate"), "can_console": _("Console"), "owner": _("Owner")}
        help_texts = RIGHTS_HELP

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Admins and operators see every VM already: a share matters to tenants alone.
        self.fields["user"].queryset = (  # type: ignore[attr-defined]
            User.objects.filter(is_active=True, role=User.Role.TENANT).order_by("username"))
        self.fields["user"].label = _("Tenant")
        self.fields["group"].queryset = Group.objects.order_by("name")  # type: ignore[attr-defined]
        self.fields["group"].label = _("or group")

    def holder_fields(self) -> list[forms.BoundField]:
        return [self["user"], self["group"]]

    def right_fields(self) -> list[forms.BoundField]:
        return [self["can_operate"], self["can_console"], self["owner"]]


class GrantCreateForm(GrantForm):
    """The grants page's form: the VM comes from a picker of the VMs the list knows, never a typed UUID."""

    vm = forms.ChoiceField(label=_("Virtual machine"))

    field_order = ["vm", "user", "group", "can_operate", "can_console", "owner"]

    def __init__(self, *args: Any, vms: list[VmChoice], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["vm"].choices = [("", _("Choose a machine…"))] + [(vm.value, vm.label) for vm in vms]  # type: ignore[attr-defined]

    def vm_key(self) -> tuple[str, str]:
        """(host name, UUID) of the chosen VM."""
        host_name, _slash, uuid = self.cleaned_data["vm"].partition("/")
        return host_name, uuid


class AllowanceForm(forms.ModelForm[DefineAllowance]):
    class Meta:
        model = DefineAllowance
        fields = ["user", "group", "hosts", "max_vms", "max_vcpus", "max_memory_mib", "pools", "max_storage_gib"]
        widgets = {"hosts": forms.CheckboxSelectMultiple, "pools": forms.CheckboxSelectMultiple}
