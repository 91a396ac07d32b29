from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import AuditEntry
from .selectors import AuditFilters

_MINUTE = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


class _Moment(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M")


class AuditFilterForm(forms.Form):
    """The audit page's filters, read from the URL (so a filtered view can be bookmarked and shared)."""

    text = forms.CharField(label=_("Search"), required=False, max_length=200)
    actor = forms.CharField(label=_("Who"), required=False, max_length=150)
    vm = forms.CharField(label=_("VM (name or UUID)"), required=False, max_length=255)
    host = forms.CharField(label=_("Host"), required=False, max_length=63)
    action = forms.ChoiceField(label=_("Action"), required=False)
    result = forms.ChoiceField(label=_("Result"), required=False,
                               choices=[("", _("any result")), *AuditEntry.Result.choices])
    since = forms.DateTimeField(label=_("From"), required=False, input_formats=_MINUTE, widget=_Moment())
    until = forms.DateTimeField(label=_("Until"), required=False, input_formats=_MINUTE, widget=_Moment())

    def __init__(self, *args: Any, actions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [("", _("any action")), *((action, action) for action in actions)]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", _("The end of the time range comes before its start."))
        return cleaned

    def filters(self) -> AuditFilters:
        """The valid filters (an invalid field narrows nothing; the form says what is wrong with it)."""
        valid = {name: value for name, value in self.cleaned_data.items() if name not in self.errors}
        return AuditFilters(**{name: value for name, value in valid.items() if value not in (None, "")})
