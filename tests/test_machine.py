"""The shared machine scaffolding: ``Machine`` and what derives from its table, ``Driver``, ``Guard`` and the fork."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Mapping
from typing import Any, NamedTuple

import pytest

from qrlogin._machine import Driver, ForkCache, Guard, Machine, fork_for_exploration
from qrlogin.errors import LocalProtocolError

# -- A toy machine: a turnstile that counts its coins --------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Locked:
    coins: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Unlocked:
    coins: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Broken:
    pass


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Coin:
    fake: bool = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Push:
    pass


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Opened:
    pass


def _coin(state: Locked, event: Coin, now_ms: int) -> tuple[Unlocked | Broken, tuple[Opened, ...]]:
    if event.fake:
        return Broken(), ()
    return Unlocked(coins=state.coins + 1), (Opened(),)


def _push(state: Unlocked, event: Push, now_ms: int) -> tuple[Locked, tuple[()]]:
    return Locked(coins=state.coins), ()


TURNSTILE: Machine[Any, Any, Any] = Machine(
    "turnstile", {(Locked, Coin): _coin, (Unlocked, Push): _push}, initial=(Locked,)
)


def test_transition_dispatches_through_the_table() -> None:
    state, effects = TURNSTILE.transition(Locked(coins=0), Coin(), 0)
    assert (state, effects) == (Unlocked(coins=1), (Opened(),))
    assert TURNSTILE.transition(state, Push(), 0) == (Locked(coins=1), ())


def test_a_pair_outside_the_table_raises_and_names_the_mistake() -> None:
    with pytest.raises(LocalProtocolError, match="Push is not legal in turnstile state Locked"):
        TURNSTILE.transition(Locked(coins=0), Push(), 0)
    with pytest.raises(LocalProtocolError, match="Coin is not a state of the turnstile machine"):
        TURNSTILE.transition(Coin(), Push(), 0)
    with pytest.raises(LocalProtocolError):
        TURNSTILE.transition(Broken(), Coin(), 0)


def test_what_derives_from_the_table() -> None:
    assert TURNSTILE.states == {Locked, Unlocked, Broken}
    assert TURNSTILE.events == {Coin, Push}
    assert TURNSTILE.legal_events(Locked) == {Coin}
    assert TURNSTILE.is_terminal(Broken()) and not TURNSTILE.is_terminal(Locked(coins=0))
    assert TURNSTILE.targets(Locked, Coin) == {Unlocked, Broken}
    assert TURNSTILE.targets(Unlocked, Push) == {Locked}
    assert TURNSTILE.mermaid() == (
        "stateDiagram-v2\n"
        "    [*] --> Locked\n"
        "    Locked --> Broken : Coin\n"
        "    Locked --> Unlocked : Coin\n"
        "    Unlocked --> Locked : Push\n"
        "    Broken --> [*]\n"
    )


def test_the_table_cannot_be_changed_behind_the_dispatch() -> None:
    with pytest.raises(TypeError):
        TURNSTILE.transitions[Broken, Coin] = _coin  # type: ignore[index]


def test_handlers_must_say_what_they_return() -> None:
    def unannotated(state: Any, event: Any, now_ms: int) -> Any:
        return state, ()

    with pytest.raises(TypeError, match="must be annotated"):
        Machine("bad", {(Locked, Coin): unannotated}).targets(Locked, Coin)


# -- Driver -----------------------------------------------------------------------------------------------------


def _turnstile(state: Any, event: Any, *, now_ms: int) -> tuple[Any, tuple[Any, ...]]:
    return TURNSTILE.transition(state, event, now_ms)


def test_driver_holds_the_current_state() -> None:
    driver: Driver[Any, Any, Any] = Driver(Locked(coins=0), _turnstile)
    assert driver.handle(Coin(), now_ms=0) == (Opened(),)
    assert driver.state == Unlocked(coins=1)
    with pytest.raises(LocalProtocolError):
        driver.handle(Coin(), now_ms=0)
    assert driver.state == Unlocked(coins=1)
    assert "Unlocked" in repr(driver)


@pytest.mark.parametrize("duplicate", [copy.copy, copy.deepcopy, pickle.dumps], ids=lambda f: f.__name__)
def test_a_driver_cannot_be_duplicated(duplicate: Any) -> None:
    driver: Driver[Any, Any, Any] = Driver(Locked(coins=0), _turnstile)
    with pytest.raises(TypeError, match="Driver"):
        duplicate(driver)


# -- Guard and the fork ---------------------------------------------------------------------------------------------


class Stamp(Guard):
    """A guard for the tests: used or not."""

    __slots__ = ("used",)

    def __init__(self) -> None:
        self.used = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Keyed:
    name: str
    stamp: Stamp = dataclasses.field(default_factory=Stamp, repr=False, compare=False)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Holder:
    first: Keyed
    second: Keyed
    plain: tuple[str, ...]
    many: tuple[Any, ...] = ()
    table: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(kw_only=True)
class Loose:
    """Not frozen, not slotted: the fork copies it through copy.copy."""

    inner: Keyed
    note: str = "loose"


class Pair(NamedTuple):
    left: Any
    right: Any


class FrozenTable(Mapping[str, Any]):
    """An immutable mapping that is not a dict, as the homeserver model's FrozenMap."""

    def __init__(self, items: Mapping[str, Any]) -> None:
        self._items = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Any:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def test_copies_share_the_guard_and_pickling_is_refused() -> None:
    keyed = Keyed(name="k")
    for twin in (copy.copy(keyed), copy.deepcopy(keyed), dataclasses.replace(keyed), copy.deepcopy([keyed])[0]):
        assert twin.stamp is keyed.stamp
    assert dataclasses.asdict(keyed)["stamp"] is keyed.stamp
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keyed)


def test_fork_gives_every_guard_a_copy_in_the_same_status() -> None:
    shared = Keyed(name="shared")
    shared.stamp.used = True
    other = Keyed(name="other")
    holder = Holder(first=shared, second=dataclasses.replace(shared, name="copy"), plain=("a", "b"), many=(other,))
    forked = fork_for_exploration(holder)
    assert forked == holder
    assert forked.first.stamp is not shared.stamp and forked.first.stamp.used
    assert forked.second.stamp is forked.first.stamp, "a guard shared before the fork stays shared in it"
    assert forked.many[0].stamp is not other.stamp and not forked.many[0].stamp.used
    assert forked.plain is holder.plain, "parts without a guard are not copied"
    forked.many[0].stamp.used = True
    assert not other.stamp.used


def test_fork_enters_every_container() -> None:
    keyed = Keyed(name="k")
    value: dict[str, Any] = {
        "list": [keyed],
        "set": frozenset({("x", 1)}),
        "pair": Pair(left=keyed, right="r"),
        "loose": Loose(inner=keyed),
        "table": FrozenTable({"k": keyed}),
        "holder": Holder(first=keyed, second=keyed, plain=(), table={"k": keyed}),
    }
    forked = fork_for_exploration(value)
    stamps = {
        id(forked["list"][0].stamp),
        id(forked["pair"].left.stamp),
        id(forked["loose"].inner.stamp),
        id(forked["table"]["k"].stamp),
        id(forked["holder"].first.stamp),
        id(forked["holder"].table["k"].stamp),
    }
    assert len(stamps) == 1 and id(keyed.stamp) not in stamps
    assert isinstance(forked["pair"], Pair) and isinstance(forked["table"], FrozenTable)
    assert isinstance(forked["loose"], Loose) and forked["loose"].note == "loose"
    assert forked["set"] is value["set"]


def test_a_fork_cache_skips_what_it_saw_without_a_guard() -> None:
    cache = ForkCache()
    plain = Holder(first=Keyed(name="a"), second=Keyed(name="b"), plain=("x",) * 3)
    first = fork_for_exploration((plain.plain, plain), cache=cache)
    again = fork_for_exploration((plain.plain, plain), cache=cache)
    assert first[0] is again[0] is plain.plain
    assert first[1].first.stamp is not again[1].first.stamp
