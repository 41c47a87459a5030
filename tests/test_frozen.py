"""The builders (qrlogin._frozen) make exactly the value the class call makes; twins and builders that could not are
refused when they are made."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import pkgutil
from typing import Any

import pytest

import qrlogin
from qrlogin._frozen import BUILDERS, builds, fields_twin
from qrlogin.http import HttpRequest, HttpResponse
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous.server import Access, Create, Inserting, Reading, Session, default_mounts

BUILT = [HttpRequest, HttpResponse, Session, Create, Access, Inserting, Reading]


def _import_every_module() -> None:
    for info in pkgutil.walk_packages(qrlogin.__path__, "qrlogin."):
        if not info.name.endswith(".__main__"):  # runs the command line
            importlib.import_module(info.name)


def test_every_builder_in_the_package_is_checked_here() -> None:
    _import_every_module()
    assert {cls for cls in BUILDERS if cls.__module__.startswith("qrlogin.")} == set(BUILT)


def _sample(cls: type) -> dict[str, Any]:
    """Distinct values for every field (so that a field stored in another's slot shows)."""
    mount = default_mounts()[-1]
    request = HttpRequest(method="GET", target="/x", headers=(("Host", "h"),), body=b"b", authenticated=True)
    session = Session(id="i", generation=ApiGeneration.V3, prefix="/p", data=b"d", revision=3, nonce=7,
                      modified_ms=11, expires_ms=13)  # fmt: skip
    samples: dict[type, dict[str, Any]] = {
        HttpRequest: {"method": "PUT", "target": "/t?q", "headers": (("a", "1"),), "body": b"x", "authenticated": True},
        HttpResponse: {"status": 201, "headers": (("b", "2"),), "body": b"y"},
        Session: {
            "id": "s",
            "generation": ApiGeneration.V2,
            "prefix": "/q",
            "data": b"z",
            "revision": 5,
            "nonce": 9,
            "modified_ms": 17,
            "expires_ms": 19,
        },
        Create: {"mount": mount, "generation": ApiGeneration.V3},
        Access: {"mount": mount, "session_id": "sid"},
        Inserting: {
            "step": Create(mount=mount, generation=ApiGeneration.V3),
            "session": session,
            "capacity": 23,
            "now_ms": 29,
            "response": HttpResponse(status=200),
        },
        Reading: {
            "step": Access(mount=mount, session_id="sid"),
            "request": request,
            "now_ms": 31,
            "entropy": bytes(32),
            "attempt": 2,
        },
    }
    return samples[cls]


@pytest.mark.parametrize("cls", BUILT, ids=lambda cls: cls.__name__)
def test_a_built_value_is_the_class_calls_value_and_stays_a_frozen_dataclass(cls: type) -> None:
    values = _sample(cls)
    built: Any = BUILDERS[cls](**values)
    for name, value in values.items():
        assert getattr(built, name) == value
    assert built == cls(**values) and hash(built) == hash(cls(**values)) and repr(built) == repr(cls(**values))
    assert dataclasses.replace(built) == built
    assert copy.deepcopy(built) == built and copy.copy(built) == built
    name = next(iter(values))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, name, values[name])
    assert type(built) is cls  # the fields twin never shows


@pytest.mark.parametrize("cls", BUILT, ids=lambda cls: cls.__name__)
def test_a_builder_takes_the_same_keywords_and_defaults_as_the_class(cls: type) -> None:
    values = _sample(cls)
    required = {field.name for field in dataclasses.fields(cls) if field.default is dataclasses.MISSING}
    only_required = {name: value for name, value in values.items() if name in required}
    assert BUILDERS[cls](**only_required) == cls(**only_required)
    with pytest.raises(TypeError):
        BUILDERS[cls](*values.values())  # keyword-only, as the class
    with pytest.raises(TypeError):
        BUILDERS[cls](**values, unknown=1)
    if required:
        with pytest.raises(TypeError):
            BUILDERS[cls](**{name: value for name, value in values.items() if name not in required})


@pytest.mark.parametrize("cls", [HttpRequest, HttpResponse], ids=lambda cls: cls.__name__)
def test_headers_are_lowercased_by_the_builder_as_by_the_class(cls: type) -> None:
    values = {**_sample(cls), "headers": (("Content-Type", "a"), ("x-b", "B"))}
    assert BUILDERS[cls](**values).headers == cls(**values).headers == (("content-type", "a"), ("x-b", "B"))
    assert cls(**{**values, "headers": {"X-A": "1"}}).headers == (("x-a", "1"),)
    assert dataclasses.replace(cls(**values), headers=(("B", "2"),)).headers == (("b", "2"),)


def test_a_twin_is_refused_for_a_class_a_builder_cannot_make() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = dataclasses.field(default_factory=list)

    for cls in (NoSlots, NotFrozen, Factory):
        with pytest.raises(TypeError):
            fields_twin(cls)


def test_a_builder_whose_parameters_are_not_the_fields_is_refused_when_it_is_registered() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Pair:
        a: int
        b: int = 2

    twin = fields_twin(Pair)

    def build_pair(*, a: int, b: int = 2) -> Pair:
        pair = object.__new__(twin)
        pair.a = a
        pair.b = b
        pair.__class__ = Pair
        return pair  # type: ignore[no-any-return]

    def wrong_default(*, a: int, b: int = 3) -> Pair:
        return Pair(a=a, b=b)

    def wrong_order(*, b: int = 2, a: int) -> Pair:
        return Pair(a=a, b=b)

    def positional(a: int, b: int = 2) -> Pair:
        return Pair(a=a, b=b)

    for wrong in (wrong_default, wrong_order, positional):
        with pytest.raises(TypeError):
            builds(Pair)(wrong)
    assert Pair not in BUILDERS
    assert builds(Pair)(build_pair) is build_pair and BUILDERS.pop(Pair) is build_pair
    built = build_pair(a=1)
    assert type(built) is Pair and built == Pair(a=1, b=2)
