from django import forms

from .models import Host


class HostForm(forms.ModelForm[Host]):
    class Meta:
        model = Host
        fields = ["name", "uri", "enabled"]
        help_texts = {
            "uri": "test:///default, test:///path/inventory.xml, qemu:///system, "
            "qemu+unix:///system?socket=/path, qemu+ssh://root@host/system, qemu+tcp://host/system, "
            "qemu+tls://host/system",
        }


class SnapshotForm(forms.Form):
    name = forms.SlugField(max_length=64, help_text="Letters, digits, - and _.")
    description = forms.CharField(max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2}))
