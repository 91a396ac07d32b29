from django.apps import AppConfig
from django.conf import settings


class DomainsConfig(AppConfig):
    name = "domains"

    def ready(self) -> None:
        from . import virt

        # No page waits longer than this for a host to accept a connection.
        virt.pool.open_timeout = settings.HOST_DEADLINE_SECONDS
