"""Writes about a user's own sign-in: their TOTP device (enrol, confirm, remove) and recovery codes, each audited
first."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.services import audited

from . import recovery_codes
from .models import User
from .second_factor import verified_device, wrong_code_message


@dataclass(frozen=True)
class Enrolment:
    device: TOTPDevice
    recovery_codes: list[str]  # shown to the user once, now


def totp_enrol_start(*, actor: User, client_addr: str | None) -> TOTPDevice:
    """A new secret for the actor's authenticator, not yet in force: it is until a code from it confirms it."""
    with audited(actor=actor, action="otp.enrol", client_addr=client_addr, message="new TOTP secret"), \
            transaction.atomic():
        TOTPDevice.objects.filter(user=actor, confirmed=False).delete()
        return TOTPDevice.objects.create(user=actor, name="authenticator", confirmed=False)


def totp_enrol_confirm(*, actor: User, code: str, client_addr: str | None) -> Enrolment:
    """Puts the actor's new secret in force once `code` shows their authenticator holds it, with the first
    recovery codes."""
    with audited(actor=actor, action="otp.confirm", client_addr=client_addr, refusals=(ValidationError,)) as entry:
        device = TOTPDevice.objects.filter(user=actor, confirmed=False).first()
        if device is None:
            raise ValidationError(_("Start again: there is no new secret waiting for a code."), code="no_device")
        if not device.verify_token(code):
            raise ValidationError(_("That code is not the one your authenticator shows now."), code="wrong_code")
        with transaction.atomic():
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            enrolment = Enrolment(device, recovery_codes.replace(actor))
        entry.message = f"{recovery_codes.COUNT} recovery codes made"
        return enrolment


def recovery_codes_replace(*, actor: User, code: str, client_addr: str | None) -> list[str]:
    """New recovery codes in place of the actor's old ones. A current code is asked for (from the authenticator, or
    an old recovery code after losing it), so a session left open cannot make codes for someone else to keep."""
    with audited(actor=actor, action="otp.recovery_codes", client_addr=client_addr, refusals=(ValidationError,)):
        if verified_device(actor, code) is None:
            raise ValidationError(wrong_code_message(code), code="wrong_code")
        return recovery_codes.replace(actor)


def totp_remove(*, actor: User, code: str, client_addr: str | None) -> None:
    """Turns two-factor sign-in off, recovery codes included; a current code (or a recovery code) is asked for, so a
    session left open cannot do it alone."""
    with audited(actor=actor, action="otp.remove", client_addr=client_addr, refusals=(ValidationError,)):
        if verified_device(actor, code) is None:
            raise ValidationError(wrong_code_message(code), code="wrong_code")
        TOTPDevice.objects.filter(user=actor).delete()
        StaticDevice.objects.filter(user=actor).delete()
