"""How the console proxy reaches a display through its host's SSH connection, when it cannot
(tests/integration/test_ssh_consoles.py has it working against the lab's sshd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consoles import tunnels
from domains.virt import GraphicsEndpoint, SshRoute


def test_a_failed_ssh_login_is_an_unreachable_display_with_ssh_s_reason(
    settings: pytest.FixtureRequest, tmp_path: Path
) -> None:
    control_dir = tmp_path / "ssh"
    settings.SSH_CONTROL_DIR = control_dir  # type: ignore[attr-defined]
    refusing = tmp_path / "refusing-ssh"
    refusing.write_text("#!/bin/sh\necho 'Host key verification failed.' >&2\nexit 255\n")
    refusing.chmod(0o755)
    endpoint = GraphicsEndpoint("vnc", "127.0.0.1", 5901, "", False, ssh=SshRoute(host="kvm1", command=str(refusing)))
    with (
        pytest.raises(OSError, match=r"^SSH login to kvm1 failed: Host key verification failed\.$"),
        tunnels.open_display(endpoint),
    ):
        pass
    assert control_dir.stat().st_mode & 0o777 == 0o700  # whoever reaches a control socket uses its login


def test_a_control_directory_too_long_for_a_socket_path_is_said_so(
    settings: pytest.FixtureRequest, tmp_path: Path
) -> None:
    settings.SSH_CONTROL_DIR = tmp_path / ("d" * 100)  # type: ignore[attr-defined]
    endpoint = GraphicsEndpoint("vnc", "127.0.0.1", 5901, "", False, ssh=SshRoute(host="kvm1"))
    with pytest.raises(OSError, match="too long a path for a unix socket"), tunnels.open_display(endpoint):
        pass
