"""Secrets never show: not in ``repr``/``str``/``format``, not in ``dataclasses.asdict``/``astuple`` (nor in JSON made
from them), and nothing that holds one can be pickled. Checked for every value that holds a secret: each channel
state of both generations, the login secrets, the OAuth device code and tokens."""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import hashlib
import json
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from qrlogin._crypto import AeadKey, X25519Secret
from qrlogin._secret import Secret
from qrlogin.channel import ecies, hpke
from qrlogin.hpke import ContextKey
from qrlogin.login.messages import Backup, CrossSigningKeys, Secrets
from qrlogin.login.oauth import DeviceAuthorization, TokenGranted, Tokens
from tests.channel.test_machines import GENERATIONS


def _raw(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _spellings(secret: bytes) -> list[str]:
    """Every way the bytes could appear in text."""
    spellings = [
        secret.hex(),
        repr(secret),
        base64.b64encode(secret).decode(),
        base64.b64encode(secret).decode().rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
    ]
    with contextlib.suppress(UnicodeDecodeError):
        spellings.append(secret.decode("utf-8"))
    return spellings


def _channel_values() -> Iterator[tuple[str, Any, list[bytes]]]:
    """Every channel state of both generations, with the secret bytes it holds (keys, check code); the terminal
    ``ChannelFailed`` holds none."""
    for generation in GENERATIONS:
        for state, inputs in generation.cases():
            if not inputs:
                continue
            secrets: list[bytes] = []
            keys = getattr(state, "keys", None)
            if isinstance(keys, ecies.EciesKeys):
                secrets += [keys.sender._key, keys.receiver._key]
            if isinstance(keys, hpke.HpkeKeys):
                secrets += [keys.sender.key.value, keys.receiver.key.value]
            if isinstance(state, hpke.AwaitingLoginOk):
                secrets += [state.sender.key.value, state.response_secret.value]
            if isinstance(getattr(state, "secret", None), X25519Secret):
                secrets.append(state.secret._private.private_bytes_raw())
            check_code = getattr(state, "check_code", None) or getattr(keys, "check_code", None)
            code = [f"'{check_code.value.decode()}'", f"b'{check_code.value.decode()}'"] if check_code else []
            yield f"{generation.name}-{type(state).__name__}", state, [*secrets, *(c.encode() for c in code)]


def _login_values() -> Iterator[tuple[str, Any, list[bytes]]]:
    keys = [_raw(f"login {n}") for n in range(4)]
    cross = CrossSigningKeys(
        master_key=Secret(keys[0]), self_signing_key=Secret(keys[1]), user_signing_key=Secret(keys[2])
    )
    backup = Backup(algorithm="m.megolm_backup.v1.curve25519-aes-sha2", key=Secret(keys[3]), backup_version="1")
    yield "login-secrets", Secrets(cross_signing=cross, backup=backup), keys
    access, refresh, device = b"syt_access_token_0123456789", b"syr_refresh_token_0123456789", b"device-code-xyzzy"
    tokens = Tokens(access_token=Secret(access), refresh_token=Secret(refresh), expires_in_s=300)
    yield "oauth-tokens", TokenGranted(tokens=tokens), [access, refresh]
    authorization = DeviceAuthorization(
        device_code=Secret(device),
        user_code="ABCD-EFGH",
        verification_uri="https://auth.example/device",
        verification_uri_complete=None,
        expires_in_s=600,
        interval_s=5,
    )
    yield "oauth-device-code", authorization, [device]


VALUES = [*_channel_values(), *_login_values()]


def _texts(value: Any) -> dict[str, str]:
    as_dict = dataclasses.asdict(value)
    as_tuple = dataclasses.astuple(value)
    return {
        "repr": repr(value),
        "str": str(value),
        "format": f"{value}",
        "asdict": repr(as_dict),
        "astuple": repr(as_tuple),
        "json of asdict": json.dumps(as_dict, default=repr),
        "str of asdict": str(as_dict),
    }


@pytest.mark.parametrize(("name", "value", "secrets"), VALUES, ids=[name for name, _, _ in VALUES])
def test_no_secret_shows_in_any_rendering(name: str, value: Any, secrets: list[bytes]) -> None:
    assert secrets, f"{name}: the test must know what to look for"
    for how, text in _texts(value).items():
        for secret in secrets:
            for spelling in _spellings(secret):
                assert spelling not in text, f"{name}: {how} shows a secret"


@pytest.mark.parametrize(("name", "value", "secrets"), VALUES, ids=[name for name, _, _ in VALUES])
def test_asdict_keeps_the_wrappers_and_pickling_is_refused(name: str, value: Any, secrets: list[bytes]) -> None:
    def leaves(item: Any) -> Iterator[Any]:
        if isinstance(item, dict):
            for inner in item.values():
                yield from leaves(inner)
        elif isinstance(item, list | tuple):
            for inner in item:
                yield from leaves(inner)
        else:
            yield item

    found = list(leaves(dataclasses.asdict(value)))
    assert not any(isinstance(leaf, bytes) and leaf in secrets for leaf in found), name
    assert any(isinstance(leaf, Secret | AeadKey | X25519Secret | ContextKey) for leaf in found), name
    with pytest.raises(TypeError, match="pickle"):
        pickle.dumps(value)


def test_a_secret_is_its_own_copy_and_stays_immutable() -> None:
    secret = Secret(b"0123456789abcdef")
    assert copy.copy(secret) is secret and copy.deepcopy(secret) is secret
    assert secret == Secret(b"0123456789abcdef") and secret != Secret(b"0123456789abcdeg")
    assert str(secret) == repr(secret) == f"{secret}" == "Secret(<16 bytes redacted>)"
    with pytest.raises(AttributeError):
        secret.value = b"other"
    with pytest.raises(TypeError):
        hash(secret)
    with pytest.raises(TypeError):
        json.dumps(secret)
    for wrapper in (AeadKey(bytes(32)), X25519Secret(bytes(range(32)))):
        assert copy.copy(wrapper) is wrapper and copy.deepcopy(wrapper) is wrapper
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(wrapper)
