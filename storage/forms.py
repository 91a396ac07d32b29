from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from django import forms
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

from domains.access import GIB

if TYPE_CHECKING:
    from django.utils.functional import _StrOrPromise as StrOrPromise

# Volume and pool names become file names on the host: no slashes, no leading dot or dash.
NAME = RegexValidator(r"^[A-Za-z0-9_][A-Za-z0-9._+-]*\Z", _("Letters, digits, and . _ + - after the first character."))
FORMATS = [("qcow2", _("qcow2 (grows as it is written, snapshots)")), ("raw", "raw")]


def _name_field(label: StrOrPromise) -> forms.CharField:
    return forms.CharField(label=label, max_length=200, validators=[NAME])


class PoolDefineForm(forms.Form):
    name = _name_field(_("pool name"))
    path = forms.CharField(
        label=_("Path"), max_length=1024, help_text=_("The directory on the host; it is made when missing."),
        validators=[RegexValidator(r"^/[^\x00\n'\"<>&]*\Z", _("An absolute path on the host, such as /srv/images."))])


class VolumeResizeForm(forms.Form):
    size_gib = forms.DecimalField(label=_("size (GiB)"), max_digits=9, decimal_places=3, min_value=Decimal("0.001"))

    def size_bytes(self) -> int:
        return int(self.cleaned_data["size_gib"] * GIB)


class VolumeCreateForm(VolumeResizeForm):
    name = _name_field(_("volume name"))
    format = forms.ChoiceField(label=_("Format"), choices=FORMATS, initial="qcow2")
    field_order = ["name", "size_gib", "format"]


class UploadStartForm(forms.Form):
    """What upload.js sends before the first chunk: the volume's name and the file's size."""

    name = _name_field(_("volume name"))
    size_bytes = forms.IntegerField(min_value=1)
