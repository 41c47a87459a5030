"""Both login machines together, in both QR directions and with both homeserver fields (v1/v2 and v3)."""

from __future__ import annotations

import pytest

from qrlogin.login.events import Completed, QrRole
from tests._login_support import (
    ACCESS_TOKEN,
    SECRETS,
    Homeserver,
    outcome,
    run_pair,
)


@pytest.mark.parametrize("new_role", [QrRole.GENERATED, QrRole.SCANNED])
@pytest.mark.parametrize("v3", [False, True])
@pytest.mark.parametrize("channel", [False, True])
def test_sign_in_completes(new_role: QrRole, v3: bool, channel: bool) -> None:
    hs = Homeserver(pending_script=["authorization_pending"])
    run = run_pair(new_role=new_role, v3=v3, hs=hs, channel=channel)
    new_out, existing_out = outcome(run.new), outcome(run.existing)
    assert isinstance(new_out, Completed) and isinstance(existing_out, Completed)
    assert new_out.secrets == SECRETS
    assert new_out.tokens is not None and new_out.tokens.access_token.value == ACCESS_TOKEN.encode()
