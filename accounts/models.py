from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class User(AbstractUser):
    """A dashboard user; the role decides how much of the inventory it sees."""

    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        OPERATOR = "operator", "Operator"
        TENANT = "tenant", "Tenant"

    role = models.CharField(max_length=16, choices=Role.choices, default=Role.TENANT)
    # Empty: the browser's (accounts.languages).
    language = models.CharField(_("language"), max_length=8, blank=True, choices=settings.LANGUAGES)

    def save(self, *args: Any, **kwargs: Any) -> None:
        # `createsuperuser` makes admins; after that the role alone decides, so demoting works.
        if self._state.adding and self.is_superuser:
            self.role = self.Role.ADMIN
        # Admins run Django's admin site too (users, groups, grants), which keys on these flags.
        self.is_staff = self.is_superuser = self.role == self.Role.ADMIN
        super().save(*args, **kwargs)

    @property
    def is_admin(self) -> bool:
        return self.is_active and self.role == self.Role.ADMIN

    @property
    def sees_every_domain(self) -> bool:
        """Admins and operators act on every VM; tenants only on VMs granted to them."""
        return self.is_active and self.role in (self.Role.ADMIN, self.Role.OPERATOR)


class OidcIdentity(models.Model):
    """Which user an OpenID Connect provider's subject signs in as: matched by (issuer, sub), never by e-mail or
    name, so nobody at the provider takes over a local account by choosing its name or address."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="oidc_identities")
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="one_user_per_oidc_subject")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
