"""Writes about a user's own sign-in: their TOTP device (enrol, confirm, remove), each audited first."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.services import audited

from .models import User


def totp_enrol_start(*, actor: User, client_addr: str | None) -> TOTPDevice:
    """A new secret for the actor's authenticator, not yet in force: it is until a code from it confirms it."""
    with audited(actor=actor, action="otp.enrol", client_addr=client_addr, message="new TOTP secret"), \
            transaction.atomic():
        TOTPDevice.objects.filter(user=actor, confirmed=False).delete()
        return TOTPDevice.objects.create(user=actor, name="authenticator", confirmed=False)


def totp_enrol_confirm(*, actor: User, code: str, client_addr: str | None) -> TOTPDevice:
    """Puts the actor's new secret in force once `code` shows their authenticator holds it."""
    with audited(actor=actor, action="otp.confirm", client_addr=client_addr, refusals=(ValidationError,)):
        device = TOTPDevice.objects.filter(user=actor, confirmed=False).first()
        if device is None:
            raise ValidationError(_("Start again: there is no new secret waiting for a code."), code="no_device")
        if not device.verify_token(code):
            raise ValidationError(_("That code is not the one your authenticator shows now."), code="wrong_code")
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        return device


def totp_remove(*, actor: User, code: str, client_addr: str | None) -> None:
    """Turns two-factor sign-in off; a current code is asked for, so a session left open cannot do it alone."""
    with audited(actor=actor, action="otp.remove", client_addr=client_addr, refusals=(ValidationError,)):
        device = TOTPDevice.objects.filter(user=actor, confirmed=True).first()
        if device is None or not device.verify_token(code):
            raise ValidationError(_("That code is not the one your authenticator shows now."), code="wrong_code")
        TOTPDevice.objects.filter(user=actor).delete()
