"""The migration form: options only. The destination is checked against the registered hosts by the view
and again by the service; it is never free text."""

from __future__ import annotations

from django import forms

from .virt.migration import CopyStorage, MigrationOptions


class MigrationForm(forms.Form):
    destination = forms.CharField(max_length=63)  # one of the page's host names; the service looks it up
    persist_dest = forms.BooleanField(label="keep it defined on the destination", required=False, initial=True)
    undefine_source = forms.BooleanField(label="remove it from the source", required=False, initial=True)
    copy_storage = forms.ChoiceField(
        label="copy storage", required=False, initial="",
        choices=[("", "no (shared storage)"), (CopyStorage.ALL.value, "all disks"),
                 (CopyStorage.INCREMENTAL.value, "incremental (backing images are on the destination)")],
    )
    peer_to_peer = forms.BooleanField(label="peer-to-peer (the source host drives it)", required=False,
                                      initial=True)
    tunnelled = forms.BooleanField(label="tunnelled through the libvirt connection", required=False)
    bandwidth_mib = forms.IntegerField(label="bandwidth limit (MiB/s)", required=False, min_value=1,
                                       max_value=1_000_000)
    max_downtime_ms = forms.IntegerField(label="maximum downtime (ms)", required=False, min_value=1,
                                         max_value=600_000)
    auto_converge = forms.BooleanField(label="auto-converge (throttle the guest's CPUs if it dirties memory "
                                             "faster than it moves)", required=False)
    compressed = forms.BooleanField(label="compress", required=False)
    postcopy = forms.BooleanField(label="allow post-copy (switch while it runs)", required=False)

    def options(self) -> MigrationOptions:
        data = self.cleaned_data
        return MigrationOptions(
            persist_dest=data["persist_dest"], undefine_source=data["undefine_source"],
            copy_storage=CopyStorage(data["copy_storage"] or ""), peer_to_peer=data["peer_to_peer"],
            tunnelled=data["tunnelled"], bandwidth_mib=data["bandwidth_mib"], max_downtime_ms=data["max_downtime_ms"],
            auto_converge=data["auto_converge"], compressed=data["compressed"], postcopy=data["postcopy"],
        )
