"""Test helpers shared by every secure channel generation (ECIES here, HPKE beside it).

* :func:`load_vectors` reads a file of ``spec_vectors/``; :func:`load_fuzz_target` imports a file of ``fuzz/``.
* :func:`run_handshake` runs G and S against each other on the shared harness and returns both established states.
* :func:`fork` gives a test its own copy of a state it uses more than once (a channel state moves on once);
  :func:`moved_to` forks an established state and moves it to other counters, to test what happens near a limit.
* :class:`SealRecorder` instruments a module's ``aead_seal`` to prove no (key, nonce) pair seals two plaintexts.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest

from qrlogin._crypto import AeadKey
from qrlogin._machine import fork_for_exploration
from qrlogin.channel._common import InitiateRequested, PayloadReceived, ReportEstablished, SendPayload
from qrlogin.vocabulary import CheckCodeEntered, PromptForCheckCode, ShowCheckCode
from tests.harness import Delivery, Harness, Party

SPEC_VECTORS = Path(__file__).resolve().parents[2] / "spec_vectors"

Transition = Callable[..., tuple[Any, tuple[Any, ...]]]


def load_vectors(name: str) -> Any:
    with (SPEC_VECTORS / name).open(encoding="utf-8") as file:
        return json.load(file)


def load_fuzz_target(name: str) -> ModuleType:
    """Import ``fuzz/<name>.py`` (the fuzz folder is not a package: atheris runs its files as scripts)."""
    if name in sys.modules:
        return sys.modules[name]
    path = SPEC_VECTORS.parent / "fuzz" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_handshake(g: Any, s: Any, transition: Transition, *, code: str | None = None) -> tuple[Any, Any, str]:
    """Run S's initiate, G's reply and the check code (S's, unless ``code`` overrides it) on a
    :class:`~tests.harness.Harness`: payloads go to the peer, the user types the code into G once G asks for it and
    nothing else can happen.

    Returns ``(g_state, s_state, shown_code)``; asserts the effects a caller relies on.
    """
    shown: list[str] = []

    def route(sender: str, effect: object) -> list[Delivery]:
        if isinstance(effect, SendPayload):
            return [Delivery("s" if sender == "g" else "g", PayloadReceived(payload=effect.payload))]
        if isinstance(effect, ShowCheckCode):
            shown.append(effect.code)
        return []

    def user() -> bool:
        asked = h["g"].of_type(PromptForCheckCode)
        if not asked or not shown or any(isinstance(step.event, CheckCodeEntered) for step in h["g"].steps):
            return False
        h.deliver(Delivery("g", CheckCodeEntered(code=shown[0] if code is None else code)))
        return True

    h = Harness([Party("g", g, transition), Party("s", s, transition)], route)
    h.deliver(Delivery("s", InitiateRequested()))
    h.run(idle=user)
    initiate, ok = h["s"].steps[:2]
    assert [type(e) for e in initiate.effects] == [SendPayload]
    assert [type(e) for e in h["g"].steps[0].effects] == [SendPayload, PromptForCheckCode]
    assert [type(e) for e in ok.effects] == [ShowCheckCode, ReportEstablished]
    assert isinstance(h["g"].steps[1].event, CheckCodeEntered)
    return h["g"].state, h["s"].state, shown[0]


T = TypeVar("T")


def fork(value: T) -> T:
    """An independent copy of ``value``: the cursors of the channels in it are copied, in the same position.

    Tests that feed one state several events (one per case) fork it first, as the explorer does; feeding the state
    itself twice is refused by design."""
    return fork_for_exploration(value)


def moved_to(state: Any, **counters: int) -> Any:
    """A fork of an established state (ECIES or HPKE) standing at other counters, its cursor moved along.

    ``counters`` names the state's fields (``send_counter``/``recv_counter`` or ``send_seq``/``recv_seq``). Nothing
    in the public API can do this: it forges a state, which is what a test of the counter limits needs."""
    moved = dataclasses.replace(fork(state), **counters)
    ecies_like = hasattr(moved, "send_counter")
    sent = moved.send_counter if ecies_like else moved.send_seq
    opened = moved.recv_counter if ecies_like else moved.recv_seq
    object.__setattr__(moved.keys.cursor, "_sent", sent)
    object.__setattr__(moved.keys.cursor, "_opened", opened)
    return moved


class SealRecorder:
    """Instruments every seal (:meth:`AeadKey.seal`, and ``aead_seal`` in the given modules); remembers each
    (key, nonce) and the plaintext sealed under it, and every pair used a second time."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *modules: object) -> None:
        self.uses: dict[tuple[bytes, bytes], bytes] = {}
        self.reused: list[tuple[bytes, bytes]] = []

        def record(key: bytes, nonce: bytes, plaintext: bytes) -> None:
            slot = (bytes(key), bytes(nonce))
            if slot in self.uses:
                self.reused.append(slot)
            self.uses[slot] = bytes(plaintext)

        original_method = AeadKey.seal

        def recording_method(self: AeadKey, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
            record(self._key, nonce, plaintext)
            return original_method(self, nonce, plaintext, aad)

        monkeypatch.setattr(AeadKey, "seal", recording_method)
        for module in modules:
            original_function: Callable[..., bytes] = module.aead_seal  # type: ignore[attr-defined]

            def recording_function(
                key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"", _original: Any = original_function
            ) -> bytes:
                record(key, nonce, plaintext)
                result: bytes = _original(key, nonce, plaintext, aad)
                return result

            monkeypatch.setattr(module, "aead_seal", recording_function)

    def reset(self) -> None:
        self.uses.clear()
        self.reused.clear()


def payload_of(effects: Iterable[object]) -> str:
    """The one ``SendPayload`` among ``effects``."""
    (send,) = [e for e in effects if isinstance(e, SendPayload)]
    return send.payload
