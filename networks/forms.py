from __future__ import annotations

import ipaddress

from django import forms
from django.utils.translation import gettext_lazy as _

from domains import virt


class NatNetworkForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=50, help_text=virt.NETWORK_NAME_RULE)
    subnet = forms.CharField(label=_("Subnet"), max_length=18,
                             help_text=_("IPv4, as 192.168.150.0/24; the host takes its first address."))
    dhcp_start = forms.GenericIPAddressField(protocol="IPv4", required=False, label=_("DHCP range start"),
                                             help_text=_("Empty: the address after the host's."))
    dhcp_end = forms.GenericIPAddressField(protocol="IPv4", required=False, label=_("DHCP range end"),
                                           help_text=_("Empty: the subnet's last guest address."))
    start = forms.BooleanField(required=False, initial=True, label=_("Start it now"))
    autostart = forms.BooleanField(required=False, initial=True, label=_("Start it with the host"))

    def clean_subnet(self) -> ipaddress.IPv4Network:
        text = self.cleaned_data["subnet"].strip()
        try:
            return ipaddress.IPv4Network(text)
        except ipaddress.NetmaskValueError as error:
            raise forms.ValidationError(_("%(text)s has no valid prefix: write it as 192.168.150.0/24."),
                                        params={"text": text}) from error
        except ValueError as error:
            if "/" in text and "has host bits set" in str(error):
                network = ipaddress.IPv4Network(text, strict=False)
                raise forms.ValidationError(_("%(text)s is an address, not a subnet: did you mean %(network)s?"),
                                            params={"text": text, "network": network}) from error
            raise forms.ValidationError(_("%(text)s is not an IPv4 subnet: write it as 192.168.150.0/24."),
                                        params={"text": text}) from error

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        if not self.errors:
            for field, messages in self.spec().problems().items():
                for message in messages:
                    self.add_error(field, message)
        return cleaned

    def spec(self) -> virt.NatNetworkSpec:
        data = self.cleaned_data
        return virt.NatNetworkSpec(
            name=data["name"], subnet=data["subnet"],
            dhcp_start=ipaddress.IPv4Address(data["dhcp_start"]) if data.get("dhcp_start") else None,
            dhcp_end=ipaddress.IPv4Address(data["dhcp_end"]) if data.get("dhcp_end") else None,
        )
