from __future__ import annotations

import ipaddress

from django import forms

from domains import virt


class NatNetworkForm(forms.Form):
    name = forms.CharField(max_length=50, help_text=virt.NETWORK_NAME_RULE)
    subnet = forms.CharField(max_length=18, help_text="IPv4, as 192.168.150.0/24; the host takes its first address.")
    dhcp_start = forms.GenericIPAddressField(protocol="IPv4", required=False, label="DHCP range start",
                                             help_text="Empty: the address after the host's.")
    dhcp_end = forms.GenericIPAddressField(protocol="IPv4", required=False, label="DHCP range end",
                                           help_text="Empty: the subnet's last guest address.")
    start = forms.BooleanField(required=False, initial=True, label="Start it now")
    autostart = forms.BooleanField(required=False, initial=True, label="Start it with the host")

    def clean_subnet(self) -> ipaddress.IPv4Network:
        text = self.cleaned_data["subnet"].strip()
        try:
            return ipaddress.IPv4Network(text)
        except ipaddress.NetmaskValueError as error:
            raise forms.ValidationError(f"{text} has no valid prefix: write it as 192.168.150.0/24.") from error
        except ValueError as error:
            if "/" in text and "has host bits set" in str(error):
                network = ipaddress.IPv4Network(text, strict=False)
                raise forms.ValidationError(f"{text} is an address, not a subnet: did you mean {network}?") from error
            raise forms.ValidationError(f"{text} is not an IPv4 subnet: write it as 192.168.150.0/24.") from error

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
