from django import forms


class TokenForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="Shown in the audit log next to what the token did.")
    expires_days = forms.IntegerField(label="expires after (days)", min_value=1, max_value=3650, required=False,
                                      help_text="Empty: never.")
    read_only = forms.BooleanField(label="read-only (refuses every change)", required=False)
