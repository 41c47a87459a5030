"""The persistent map behaves exactly as a ``dict`` that is copied before every update.

Every rule of the state machine applies the same update to a :class:`FrozenMap` and to a ``dict`` model and checks
that they agree on everything a caller can observe (lookups, membership, length, iteration order, ``items``,
``values``, equality and hash against a map built afresh from the same content). Every earlier version is kept and
rechecked at each step, so an update that disturbed a shared subtree of an old version would be caught. Keys come
from a small space and include keys whose hashes collide on every bit, so deep paths, collision nodes and the
lifting of a last entry on removal are all exercised.
"""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from qrlogin.homeserver._frozenmap import FrozenMap


class Colliding:
    """A key whose hash is chosen by the test: equal hashes, different keys."""

    __slots__ = ("hash_value", "name")

    def __init__(self, name: int, hash_value: int) -> None:
        self.name = name
        self.hash_value = hash_value

    def __hash__(self) -> int:
        return self.hash_value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Colliding) and (self.name, self.hash_value) == (other.name, other.hash_value)

    def __repr__(self) -> str:
        return f"Colliding({self.name}, {self.hash_value})"


HASHES = st.sampled_from([0, 1, 32, 1 << 60, -1 << 62, (1 << 63) - 1, -2])
KEYS = st.one_of(
    st.integers(min_value=-40, max_value=40),
    st.sampled_from([True, False, 1.0, 0.0, -1.0]),  # equal to 1, 0 and -1: the first key object stays
    st.integers(),
    st.text(max_size=3),
    st.builds(Colliding, st.integers(min_value=0, max_value=4), HASHES),
)
VALUES = st.one_of(st.integers(min_value=0, max_value=5), st.text(max_size=2))


def assert_same(frozen: FrozenMap[object, object], expected: dict[object, object]) -> None:
    assert len(frozen) == len(expected)
    assert list(map(repr, frozen)) == list(map(repr, expected))
    assert list(frozen.items()) == list(expected.items())
    assert list(frozen.values()) == list(expected.values())
    assert dict(frozen) == expected
    for key, value in expected.items():
        assert key in frozen and frozen[key] == value and frozen.get(key) == value
    rebuilt = FrozenMap(expected)
    assert frozen == rebuilt and hash(frozen) == hash(rebuilt)


class MapAgainstDict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.current: FrozenMap[object, object] = FrozenMap()
        self.model: dict[object, object] = {}
        self.history: list[tuple[FrozenMap[object, object], dict[object, object]]] = []

    def _advance(self, frozen: FrozenMap[object, object], model: dict[object, object]) -> None:
        self.history.append((self.current, self.model))
        self.current, self.model = frozen, model

    @rule(key=KEYS, value=VALUES)
    def set(self, key: object, value: object) -> None:
        model = dict(self.model)
        model[key] = value
        self._advance(self.current.set(key, value), model)

    @rule(key=KEYS)
    def remove(self, key: object) -> None:
        model = dict(self.model)
        model.pop(key, None)
        removed = self.current.remove(key)
        if key not in self.model:
            assert removed is self.current
        self._advance(removed, model)

    @rule(data=st.data())
    def remove_present(self, data: st.DataObject) -> None:
        if self.model:
            self.remove(data.draw(st.sampled_from(list(self.model))))

    @rule(key=KEYS)
    def lookup_absent(self, key: object) -> None:
        if key not in self.model:
            assert key not in self.current and self.current.get(key, "default") == "default"

    @invariant()
    def agrees_now_and_before(self) -> None:
        assert_same(self.current, self.model)
        for frozen, model in self.history[-5:]:
            assert_same(frozen, model)
        for frozen, model in self.history:
            assert (frozen == self.current) == (model == self.model)


TestMapAgainstDict = MapAgainstDict.TestCase


@given(st.dictionaries(KEYS, VALUES), st.dictionaries(KEYS, VALUES))
def test_equality_and_hash_follow_content_not_history(
    first: dict[object, object], second: dict[object, object]
) -> None:
    forward = FrozenMap(first)
    backward: FrozenMap[object, object] = FrozenMap()
    for key in reversed(list(first)):
        backward = backward.set(key, first[key])
    assert forward == backward and hash(forward) == hash(backward)
    assert (FrozenMap(first) == FrozenMap(second)) == (first == second)
    assert FrozenMap(forward) == forward and list(FrozenMap(forward)) == list(first)


@given(st.dictionaries(st.text(max_size=4), st.integers()))
def test_round_trips(items: dict[str, int]) -> None:
    frozen = FrozenMap(items)
    assert dict(frozen) == items and list(frozen) == list(items)
    copied = copy.deepcopy(frozen)
    assert copied == frozen and list(copied) == list(items)
    assert repr(frozen) == f"FrozenMap({items!r})"


def test_a_value_that_cannot_be_hashed_is_stored_and_only_hashing_fails() -> None:
    start: FrozenMap[str, object] = FrozenMap({"a": 1})
    frozen = start.set("b", [1])
    assert frozen["b"] == [1] and frozen.remove("b") == FrozenMap({"a": 1})
    assert hash(frozen.remove("b")) == hash(FrozenMap({"a": 1}))
    try:
        hash(frozen)
    except TypeError:
        pass
    else:
        raise AssertionError("a map holding a list hashed")


def test_ten_thousand_entries_share_structure_with_their_predecessor() -> None:
    frozen: FrozenMap[int, int] = FrozenMap()
    for index in range(10_000):
        frozen = frozen.set(index, index)
    updated = frozen.set(5, -5).remove(7)
    assert frozen[5] == 5 and 7 in frozen and updated[5] == -5 and 7 not in updated
    assert len(updated) == 9_999 and list(updated)[:6] == [0, 1, 2, 3, 4, 5]
    shared = set(map(id, frozen._root.children)) & set(map(id, updated._root.children))
    assert len(shared) >= len(frozen._root.children) - 2


@given(st.dictionaries(KEYS, VALUES), st.lists(st.tuples(KEYS, st.none() | VALUES)))
def test_changes_from_an_older_version_are_exactly_the_differences(
    items: dict[object, object], updates: list[tuple[object, object]]
) -> None:
    older = FrozenMap(items)
    newer = older
    expected = dict(items)
    for key, value in updates:
        if value is None:
            newer = newer.remove(key)
            expected.pop(key, None)
        else:
            newer = newer.set(key, value)
            expected[key] = value
    changes = newer.changes_from(older)
    removed = [key for key, present, _ in changes if not present]
    added = [key for key, present, _ in changes if present]
    assert len(set(map(repr, removed))) == len(removed) and len(set(map(repr, added))) == len(added)
    replayed = dict(items)
    for key, present, value in changes:
        if present:
            assert replayed.get(key, object()) != value
            replayed[key] = value
        else:
            del replayed[key]
    assert list(replayed.items()) == list(expected.items())  # the order too
    assert newer.changes_from(newer) == []
    replayed = dict(items)
    for key, present, value in FrozenMap(expected).changes_from(older):  # built afresh: nothing shared
        if present:
            replayed[key] = value
        else:
            del replayed[key]
    assert replayed == expected


def _depth(node: object) -> int:
    children = getattr(node, "children", ())
    return 1 + max((_depth(child) for child in children if type(child) is not tuple), default=0)


@given(st.lists(st.integers(), min_size=2, max_size=40, unique=True))
def test_removing_down_to_one_entry_leaves_no_chain_of_nodes(keys: list[int]) -> None:
    frozen: FrozenMap[int, int] = FrozenMap()
    for key in keys:
        frozen = frozen.set(key, key)
    for key in keys[1:]:
        frozen = frozen.remove(key)
    assert dict(frozen) == {keys[0]: keys[0]} and _depth(frozen._root) == 1
