"""An immutable, hashable, persistent mapping for the model's tables.

Frozen dataclasses only freeze their attributes; a ``dict`` field could still be mutated in place, and it would make
the whole value unhashable (the simulator's exhaustive exploration deduplicates homeserver states by hash). So every
table of the model is a :class:`FrozenMap`: updates return a new map and leave the old one valid and unchanged,
which is what lets the simulator branch worlds from any earlier state.

Theory of operation
-------------------
A served homeserver holds thousands of accounts, tokens and sessions, so an update must not copy the table. The map
is a hash array mapped trie (Bagwell, "Ideal Hash Trees", 2001), the structure behind Clojure's and CPython's own
``contextvars`` persistent maps:

* a key's ``hash`` (folded to 64 bits) is consumed five bits per level; each inner node holds a 32-bit ``bitmap`` of
  the slots in use and a tuple of only those children, so a node's size follows its population. The child for slot
  ``i`` sits at index ``popcount(bitmap & ((1 << i) - 1))``;
* a child is either an entry (a plain tuple ``(hash, key, value, seq)``) or a deeper node; two keys whose 64-bit
  hashes are equal end in a collision node that lists them;
* ``set`` and ``remove`` copy only the nodes on the path from the root to the key, at most 13 levels and in practice
  ``log32(n)`` (three for 10,000 entries); everything else is shared with the old map. A removal that leaves a
  subtree holding a single entry lifts that entry up as far as it is alone, so removals leave no chains of
  one-entry nodes behind.

Two more things are maintained per update, so that nothing ever walks the whole map:

* **the hash**: ``hash(map)`` is the sum modulo 2**64 of ``hash((key, value))`` over the entries, which does not
  depend on order, so equal maps hash equal however they were built. ``set`` and ``remove`` adjust it by the entries
  they add and drop. A map built from an unhashable value computes it lazily instead, as before;
* **the order**: a ``dict`` iterates in insertion order, and so does this map (the trie's own order follows the
  hashes, and ``str`` hashes differ between processes, so it would make answers that list a table differ from run to
  run). Each entry carries the sequence number of its insertion; replacing a value keeps it, as a ``dict`` keeps the
  position. Iteration sorts the entries by it once per map value and caches the result.

Equality is content equality, as for ``dict``, and a ``FrozenMap`` never equals a plain ``dict``.
"""

from __future__ import annotations

from collections.abc import Hashable, ItemsView, Iterator, Mapping, ValuesView
from typing import Any, Generic, TypeVar, cast, overload

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

_BITS = 5
_SLOT = (1 << _BITS) - 1
_HASH_BITS = 64
_HASH_MASK = (1 << _HASH_BITS) - 1

# An entry: (hash of the key folded to 64 bits, key, value, insertion sequence number).
_Entry = tuple[int, Any, Any, int]


class _Node:
    """An inner node: the bitmap of used slots and their children (entries or nodes), in slot order."""

    __slots__ = ("bitmap", "children")

    def __init__(self, bitmap: int, children: tuple[Any, ...]) -> None:
        self.bitmap = bitmap
        self.children = children


class _Collision:
    """Entries whose keys have the same 64-bit hash (only below the last level)."""

    __slots__ = ("entries", "hash")

    def __init__(self, key_hash: int, entries: tuple[_Entry, ...]) -> None:
        self.hash = key_hash
        self.entries = entries


_EMPTY_ROOT = _Node(0, ())


def _fold(key: object) -> int:
    return hash(key) & _HASH_MASK


def _find(node: Any, key_hash: int, key: object) -> _Entry | None:
    shift = 0
    while True:
        if type(node) is _Collision:
            for entry in node.entries:
                if entry[1] is key or entry[1] == key:
                    return entry
            return None
        bit = 1 << ((key_hash >> shift) & _SLOT)
        if not node.bitmap & bit:
            return None
        child = node.children[(node.bitmap & (bit - 1)).bit_count()]
        if type(child) is tuple:
            if child[0] == key_hash and (child[1] is key or child[1] == key):
                return cast(_Entry, child)
            return None
        node = child
        shift += _BITS


def _pair(shift: int, first: _Entry, second: _Entry) -> Any:
    """The smallest subtree at ``shift`` holding two entries with different keys."""
    if shift >= _HASH_BITS:
        return _Collision(first[0], (first, second))
    a = (first[0] >> shift) & _SLOT
    b = (second[0] >> shift) & _SLOT
    if a == b:
        return _Node(1 << a, (_pair(shift + _BITS, first, second),))
    if a < b:
        return _Node((1 << a) | (1 << b), (first, second))
    return _Node((1 << a) | (1 << b), (second, first))


def _insert(node: Any, shift: int, entry: _Entry) -> tuple[Any, _Entry | None]:
    """``node`` with ``entry`` in it, and the entry it replaced (whose sequence number the new one must take)."""
    key = entry[1]
    if type(node) is _Collision:
        for index, old in enumerate(node.entries):
            if old[1] is key or old[1] == key:
                entry = (entry[0], old[1], entry[2], old[3])  # as a dict, the first key object stays
                return _Collision(node.hash, (*node.entries[:index], entry, *node.entries[index + 1 :])), old
        return _Collision(node.hash, (*node.entries, entry)), None
    bit = 1 << ((entry[0] >> shift) & _SLOT)
    index = (node.bitmap & (bit - 1)).bit_count()
    children = node.children
    if not node.bitmap & bit:
        return _Node(node.bitmap | bit, (*children[:index], entry, *children[index:])), None
    child = children[index]
    replaced: _Entry | None
    if type(child) is tuple:
        if child[0] == entry[0] and (child[1] is key or child[1] == key):
            replaced = child
            new_child: Any = (entry[0], child[1], entry[2], child[3])  # as a dict, the first key object stays
        else:
            replaced = None
            new_child = _pair(shift + _BITS, child, entry)
    else:
        new_child, replaced = _insert(child, shift + _BITS, entry)
    return _Node(node.bitmap, (*children[:index], new_child, *children[index + 1 :])), replaced


def _delete(node: Any, shift: int, key_hash: int, key: object) -> tuple[Any, _Entry | None]:
    """``node`` without ``key`` and the entry removed (None, and ``node`` itself, if absent).

    A subtree left with one entry and no deeper node is returned as that entry, and an empty one as None, so that the
    parent absorbs it; only the root stays a node whatever it holds.
    """
    if type(node) is _Collision:
        for index, old in enumerate(node.entries):
            if old[1] is key or old[1] == key:
                rest = (*node.entries[:index], *node.entries[index + 1 :])
                return (rest[0] if len(rest) == 1 else _Collision(node.hash, rest)), old
        return node, None
    bit = 1 << ((key_hash >> shift) & _SLOT)
    if not node.bitmap & bit:
        return node, None
    index = (node.bitmap & (bit - 1)).bit_count()
    child = node.children[index]
    if type(child) is tuple:
        if not (child[0] == key_hash and (child[1] is key or child[1] == key)):
            return node, None
        removed: _Entry | None = child
        new_child: Any = None
    else:
        new_child, removed = _delete(child, shift + _BITS, key_hash, key)
        if removed is None:
            return node, None
    if new_child is None:
        children = (*node.children[:index], *node.children[index + 1 :])
        bitmap = node.bitmap & ~bit
        if shift and not children:
            return None, removed
        if shift and len(children) == 1 and type(children[0]) is tuple:
            return children[0], removed
        return _Node(bitmap, children), removed
    if shift and len(node.children) == 1 and type(new_child) is tuple:
        return new_child, removed  # an entry lifted from below, alone here too: it goes on up
    return _Node(node.bitmap, (*node.children[:index], new_child, *node.children[index + 1 :])), removed


def _entries(node: Any) -> Iterator[_Entry]:
    stack = [node]
    while stack:
        current = stack.pop()
        children = current.entries if type(current) is _Collision else current.children
        for child in children:
            if type(child) is tuple:
                yield child
            else:
                stack.append(child)


def _diff(new: Any, old: Any, shift: int, out: list[tuple[Any, bool, Any, int]]) -> None:
    """Append ``(key, present, value, seq)`` for each key whose binding differs between two subtrees at ``shift``."""
    if new is old:
        return
    if type(new) is _Node and type(old) is _Node:
        for slot in range(1 << _BITS):
            bit = 1 << slot
            if not (new.bitmap | old.bitmap) & bit:
                continue
            a = new.children[(new.bitmap & (bit - 1)).bit_count()] if new.bitmap & bit else None
            b = old.children[(old.bitmap & (bit - 1)).bit_count()] if old.bitmap & bit else None
            if a is not b:
                _diff(a, b, shift + _BITS, out)
        return
    # An entry, a collision or nothing on one side: compare the (few) entries below this point directly.
    olds = {} if old is None else {e[1]: e for e in ([old] if type(old) is tuple else _entries(old))}
    for entry in [] if new is None else [new] if type(new) is tuple else _entries(new):
        before = olds.pop(entry[1], None)
        if before is not None and before[3] != entry[3]:
            # Removed and bound again since: it moved to the end of the order, so it is reported as both.
            out.append((entry[1], False, None, before[3]))
            before = None
        if before is None or not (before[2] is entry[2] or before[2] == entry[2]):
            out.append((entry[1], True, entry[2], entry[3]))
    out.extend((entry[1], False, None, entry[3]) for entry in olds.values())


def _pair_hash(key: object, value: object) -> int | None:
    try:
        return hash((key, value)) & _HASH_MASK
    except TypeError:
        return None


class _Items(ItemsView[K, V]):
    """``items()`` iterating the ordered entries directly rather than looking every key up again."""

    __slots__ = ("_frozen",)

    def __init__(self, mapping: FrozenMap[K, V]) -> None:
        super().__init__(mapping)
        self._frozen = mapping

    def __iter__(self) -> Iterator[tuple[K, V]]:
        for entry in self._frozen._ordered():
            yield entry[1], entry[2]


class _Values(ValuesView[V]):
    __slots__ = ("_frozen",)

    def __init__(self, mapping: FrozenMap[Any, V]) -> None:
        super().__init__(mapping)
        self._frozen = mapping

    def __iter__(self) -> Iterator[V]:
        for entry in self._frozen._ordered():
            yield entry[2]


class FrozenMap(Mapping[K, V], Generic[K, V]):
    """An immutable mapping with ``set`` and ``remove`` that return new maps; see the module docstring."""

    __slots__ = ("_hash", "_len", "_next_seq", "_order", "_root")

    _root: _Node
    _len: int
    _next_seq: int
    _hash: int | None
    _order: tuple[_Entry, ...] | None

    def __init__(self, items: Mapping[K, V] | None = None) -> None:
        if isinstance(items, FrozenMap):
            self._init(items._root, items._len, items._next_seq, items._hash)
            return
        self._init(_EMPTY_ROOT, 0, 0, 0)
        if items:
            built: FrozenMap[K, V] = self
            for key, value in items.items():
                built = built.set(key, value)
            self._init(built._root, built._len, built._next_seq, built._hash)

    def _init(self, root: _Node, length: int, next_seq: int, pair_hash_sum: int | None) -> None:
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_len", length)
        object.__setattr__(self, "_next_seq", next_seq)
        object.__setattr__(self, "_hash", pair_hash_sum)
        object.__setattr__(self, "_order", None)

    @classmethod
    def _make(cls, root: _Node, length: int, next_seq: int, pair_hash_sum: int | None) -> FrozenMap[K, V]:
        new: FrozenMap[K, V] = object.__new__(cls)
        new._init(root, length, next_seq, pair_hash_sum)
        return new

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FrozenMap is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self.items()),))

    # -- reading ---------------------------------------------------------------------------------------------------

    def __getitem__(self, key: K) -> V:
        entry = _find(self._root, _fold(key), key)
        if entry is None:
            raise KeyError(key)
        return cast(V, entry[2])

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D, /) -> V | D: ...
    def get(self, key: K, default: object = None, /) -> object:
        entry = _find(self._root, _fold(key), key)
        return default if entry is None else entry[2]

    def __contains__(self, key: object) -> bool:
        return _find(self._root, _fold(key), key) is not None

    def __len__(self) -> int:
        return self._len

    def _ordered(self) -> tuple[_Entry, ...]:
        order = self._order
        if order is None:
            order = tuple(sorted(_entries(self._root), key=lambda entry: entry[3]))
            object.__setattr__(self, "_order", order)
        return order

    def __iter__(self) -> Iterator[K]:
        for entry in self._ordered():
            yield entry[1]

    def items(self) -> ItemsView[K, V]:
        return _Items(self)

    def values(self) -> ValuesView[V]:
        return _Values(self)

    # -- identity --------------------------------------------------------------------------------------------------

    def __hash__(self) -> int:
        if self._hash is None:
            total = 0
            for entry in _entries(self._root):
                total += hash((entry[1], entry[2])) & _HASH_MASK
            object.__setattr__(self, "_hash", total & _HASH_MASK)
        assert self._hash is not None
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrozenMap):
            return NotImplemented
        if other is self or other._root is self._root:
            return True
        if self._len != other._len:
            return False
        if self._hash is not None and other._hash is not None and self._hash != other._hash:
            return False
        for entry in _entries(self._root):
            found = _find(other._root, entry[0], entry[1])
            if found is None or not (found[2] is entry[2] or found[2] == entry[2]):
                return False
        return True

    def __repr__(self) -> str:
        return f"FrozenMap({dict(self.items())!r})"

    def changes_from(self, older: FrozenMap[K, V]) -> list[tuple[K, bool, V | None]]:
        """What turns ``older`` into this map, order included, when applied in turn to a ``dict`` holding ``older``.

        First ``(key, False, None)`` for each key removed, then ``(key, True, value)`` for each key bound anew or
        rebound to an unequal value, in this map's iteration order. A key removed and bound again in between is in
        both lists, since it moved to the end. Subtrees the two maps share are skipped without being walked, so for a
        map derived from ``older`` by a few updates this costs a few paths, not the table.
        """
        out: list[tuple[Any, bool, Any, int]] = []
        _diff(self._root, older._root, 0, out)
        out.sort(key=lambda change: (change[1], change[3]))
        return [(key, present, value) for key, present, value, _ in out]

    # -- updating --------------------------------------------------------------------------------------------------

    def set(self, key: K, value: V) -> FrozenMap[K, V]:
        """A map with ``key`` bound to ``value``; a key already present keeps its place in the iteration order."""
        key_hash = _fold(key)
        root, replaced = _insert(self._root, 0, (key_hash, key, value, self._next_seq))
        total = self._hash
        if total is not None:
            added = _pair_hash(key, value)
            dropped = 0 if replaced is None else _pair_hash(replaced[1], replaced[2])
            total = None if added is None or dropped is None else (total + added - dropped) & _HASH_MASK
        if replaced is None:
            return self._make(root, self._len + 1, self._next_seq + 1, total)
        return self._make(root, self._len, self._next_seq, total)

    def remove(self, key: K) -> FrozenMap[K, V]:
        """A map without ``key``; removing an absent key returns this map itself."""
        root, removed = _delete(self._root, 0, _fold(key), key)
        if removed is None:
            return self
        total = self._hash
        if total is not None:
            dropped = _pair_hash(removed[1], removed[2])
            total = None if dropped is None else (total - dropped) & _HASH_MASK
        return self._make(root, self._len - 1, self._next_seq, total)
