from django.apps import AppConfig
from django.conf import settings


class DomainsConfig(AppConfig):
    name = "domains"

    def ready(self) -> None:
        from . import guest_addresses, virt

        # No page waits longer than the deadline for a host to accept a connection.
        virt.configure(open_timeout=settings.HOST_DEADLINE_SECONDS,
                       keepalive=(settings.KEEPALIVE_INTERVAL, settings.KEEPALIVE_COUNT),
                       addresses=guest_addresses.store)
