"""An authenticator app for the two-factor tests: it holds a TOTP secret and shows codes as a person reads them.

A code is good once (the portal remembers the last step it accepted), so each code given is for a later 30-second
step than the one before: now's, or the next one when now's was already used (the portal accepts one step early).
"""

from __future__ import annotations

import time

from django_otp.oath import TOTP

STEP_SECONDS = 30


class Authenticator:
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.last_step = -1

    def _code_at(self, step: int) -> str:
        totp = TOTP(self.key, step=STEP_SECONDS)
        totp.time = step * STEP_SECONDS
        return f"{totp.token():06d}"

    def code(self) -> str:
        """The next code the app shows."""
        self.last_step = max(int(time.time()) // STEP_SECONDS, self.last_step + 1)
        return self._code_at(self.last_step)

    def wrong_code(self) -> str:
        """A real code of this secret, but for five minutes from now: outside what the portal accepts."""
        return self._code_at(int(time.time()) // STEP_SECONDS + 10)
