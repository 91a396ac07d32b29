from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from domains.models import Host

# An upload that got no chunk for this long is abandoned: its partial volume is deleted (services.uploads_expire).
ABANDONED_AFTER = timedelta(minutes=30)


class UploadSession(models.Model):
    """A file a user uploads from the browser into a new volume, chunk by chunk: how far it got, so that
    the browser can resume after a dropped connection from the offset recorded here."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="upload_sessions")
    pool = models.CharField(max_length=255)
    volume = models.CharField(max_length=255)
    total_bytes = models.PositiveBigIntegerField()
    received_bytes = models.PositiveBigIntegerField(default=0)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="upload_sessions")
    created_at = models.DateTimeField(default=timezone.now)
    last_chunk_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.pool}/{self.volume} on {self.host}: {self.received_bytes} of {self.total_bytes} bytes"

    @property
    def finished(self) -> bool:
        return self.received_bytes >= self.total_bytes

    @property
    def abandoned(self) -> bool:
        return not self.finished and self.last_chunk_at < timezone.now() - ABANDONED_AFTER

    @property
    def percent(self) -> int:
        return self.received_bytes * 100 // self.total_bytes if self.total_bytes else 100
