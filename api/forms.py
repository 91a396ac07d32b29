from django import forms
from django.utils.translation import gettext_lazy as _


class TokenForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=64,
                           help_text=_("Shown in the audit log next to what the token did."))
    expires_days = forms.IntegerField(label=_("expires after (days)"), min_value=1, max_value=3650, required=False,
                                      help_text=_("Empty: never."))
    read_only = forms.BooleanField(label=_("read-only (refuses every change)"), required=False)
