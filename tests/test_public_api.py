"""The public API needs no private name: every public module says what it exports, and all of it exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import qrlogin


def _public_modules() -> list[str]:
    names = ["qrlogin"]
    for info in pkgutil.walk_packages(qrlogin.__path__, prefix="qrlogin."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


PUBLIC = _public_modules()


def test_the_walk_finds_every_layer() -> None:
    for layer in ("qrlogin.qr", "qrlogin.channel.ecies", "qrlogin.rendezvous.client", "qrlogin.login.new_device"):
        assert layer in PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_module_declares_all_and_each_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} has no __all__"
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"


def test_the_root_exports_what_an_embedder_must_construct_or_match() -> None:
    for name in ("Secret", "Driver", "DeviceRole", "QrSide", "LocalProtocolError", "RemoteProtocolError"):
        assert name in qrlogin.__all__
        assert not getattr(qrlogin, name).__module__.startswith("qrlogin._") or name in {"Secret", "Driver", "Machine"}
