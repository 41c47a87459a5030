"""``slot_init`` builds exactly what the dataclass ``__init__`` it replaces would have built."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

import qrlogin.channel.ecies  # noqa: F401 -- registers its classes with slot_init
from qrlogin._machine import SLOT_INIT_ORIGINALS, slot_init, slot_setters


def test_every_hot_class_is_registered() -> None:
    names = {cls.__qualname__ for cls in SLOT_INIT_ORIGINALS}
    assert {"PayloadReceived", "SealRequested", "SendPayload", "DeliverPlaintext", "Established", "EciesKeys"} <= names


@pytest.mark.parametrize("cls", list(SLOT_INIT_ORIGINALS), ids=lambda cls: cls.__qualname__)
def test_generated_init_matches_the_dataclass_one(cls: type) -> None:
    original = SLOT_INIT_ORIGINALS[cls]
    generated = cls.__dict__["__init__"]
    assert inspect.signature(generated) == inspect.signature(original)
    assert generated.__annotations__ == original.__annotations__
    if hasattr(cls, "__post_init__"):
        return  # its __post_init__ checks real values; the classes' own tests build those both ways
    # One distinct object per init field: a field stored in the wrong slot, or not at all, shows.
    arguments: dict[str, Any] = {f.name: object() for f in dataclasses.fields(cls) if f.init}
    fast = cls(**arguments)
    slow: Any = object.__new__(cls)
    original(slow, **arguments)
    for f in dataclasses.fields(cls):
        assert getattr(fast, f.name) is getattr(slow, f.name)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(fast, f.name, None)
    assert not hasattr(fast, "__dict__")
    # The defaults are the dataclass's own.
    required = {
        f.name: arguments[f.name]
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    defaulted: Any = object.__new__(cls)
    original(defaulted, **required)
    assert all(getattr(cls(**required), f.name) is getattr(defaulted, f.name) for f in dataclasses.fields(cls))


def test_post_init_still_runs() -> None:
    @slot_init
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Doubled:
        value: int
        twice: int = dataclasses.field(init=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "twice", 2 * self.value)

    assert Doubled(value=21).twice == 42
    assert Doubled(value=21) == Doubled(value=21)


def test_refuses_what_it_cannot_build_faithfully() -> None:
    with pytest.raises(TypeError, match="frozen dataclass with slots"):

        @slot_init
        @dataclasses.dataclass(slots=True)
        class Mutable:
            value: int

    with pytest.raises(TypeError, match="default_factory"):

        @slot_init
        @dataclasses.dataclass(frozen=True, slots=True)
        class WithFactory:
            values: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="InitVar"):

        @slot_init
        @dataclasses.dataclass(frozen=True, slots=True)
        class WithInitVar:
            value: int
            scale: dataclasses.InitVar[int]

            def __post_init__(self, scale: int) -> None:
                pass


def test_slot_setters_must_name_every_field() -> None:
    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Pair:
        left: int
        right: int

    set_right, set_left = slot_setters(Pair, "right", "left")
    pair: Any = object.__new__(Pair)
    set_left(pair, 1)
    set_right(pair, 2)
    assert pair == Pair(left=1, right=2)
    with pytest.raises(TypeError, match="every field once: left, right"):
        slot_setters(Pair, "left")
    with pytest.raises(TypeError, match="every field once"):
        slot_setters(Pair, "left", "right", "right")
    with pytest.raises(TypeError, match="frozen dataclass with slots"):
        slot_setters(dataclasses.make_dataclass("Loose", ["value"]), "value")
