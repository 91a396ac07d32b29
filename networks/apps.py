from django.apps import AppConfig


class NetworksConfig(AppConfig):
    """A host's libvirt networks (issue 15): pages and actions; no models of its own."""

    name = "networks"
