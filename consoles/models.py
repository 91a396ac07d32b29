"""Console tickets: data only. The ticket itself is never stored, only its SHA-256."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from domains.models import Host


class ConsoleTicket(models.Model):
    """One permission to open one console once, bound to everything it was issued for.

    Issued by the console page (Django, after the permission gate), consumed by the proxy with a
    conditional UPDATE when the websocket opens; the same row then records the console session.
    """

    class Kind(models.TextChoices):
        VNC = "vnc", "VNC"
        SPICE = "spice", "SPICE"
        SERIAL = "serial", "serial"

    token_hash = models.CharField(max_length=64, unique=True)  # hex SHA-256 of the ticket
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_tickets")
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="console_tickets")
    domain_uuid = models.UUIDField()
    domain_name = models.CharField(max_length=255)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # GraphicsEndpoint.key or SerialEndpoint.key when issued, e.g. "vnc 127.0.0.1:5900 run 3", "serial run 3"
    endpoint = models.CharField(max_length=512)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)
    client_addr = models.GenericIPAddressField(null=True, blank=True)  # where the console was opened from
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=255, blank=True)
    # The origin of the portal page that asked for it: only a websocket from that page (or a trusted
    # origin) may open it (vmportal.origins).
    origin = models.CharField(max_length=255, blank=True)
    # The tickets of one request share it: one console (a SPICE console opens a websocket per channel).
    batch = models.UUIDField(null=True, blank=True)
    # While open, the proxy says it still relays it every few seconds: a console whose proxy process died
    # without closing it stops counting towards its user's open consoles.
    seen_at = models.DateTimeField(null=True, blank=True)
    # Asked for by an API client with this token: its websocket proves its user with the same token, as a page's
    # proves it with its session (consoles.services._ticket_user).
    api_token = models.ForeignKey("api.ApiToken", null=True, blank=True, on_delete=models.CASCADE, related_name="+")

    class Meta:
        ordering = ["-issued_at"]
        indexes = [models.Index(fields=["user", "issued_at"])]

    def __str__(self) -> str:
        return f"{self.kind} console of {self.domain_name} for {self.user_id}"
