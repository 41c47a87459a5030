"""Keeping a served homeserver model's accounts, devices, clients and tokens in SQLite across restarts.

Theory of operation
-------------------
The homeserver model (:mod:`qrlogin.homeserver`) is a pure value and stays one: nothing in it knows about files.
:class:`StateFile` sits beside the ASGI app: :meth:`StateFile.restore` puts the stored tables into a freshly seeded
homeserver at start, and :meth:`StateFile.after` (an ``after`` hook of
:class:`~qrlogin.adapters.homeserver_asgi.HomeserverApp`, run under the app's lock after every step) writes what the
step changed, in one transaction, before the response goes out.

What is kept (:data:`TABLES`): the registry's accounts and, in rows of their own, their devices, the bindings of
access and refresh tokens and the device-to-token index, and the registered OAuth clients. Tokens are stored as the
model stores them, as SHA-256 digests, and passwords as their digests. What is not kept, because it lives for
minutes: pending device grants, user-interactive auth sessions, rendezvous sessions. Ids and tokens issued after a
restart come from a fresh seed; the registry avoids device ids already taken, and 32 random bytes do not collide.

Rows, not snapshots. Each table is a :class:`~qrlogin.homeserver._frozenmap.FrozenMap`; a step replaces a few entries
and shares the rest with the previous value, so :meth:`~qrlogin.homeserver._frozenmap.FrozenMap.changes_from` finds
the changed entries without walking the table, and only their rows are written (``records``: table name, key, value;
an upsert keeps a row's ``rowid``, so loading ``ORDER BY rowid`` restores insertion order). The cost of a step stays
independent of how much the server holds: an account's devices are rows of their own (``Table.nested``), so seeing a
device again rewrites that device's row only.

The codec (:func:`encode`, :func:`decode`) is generic and strict: it follows the type annotations of the frozen
dataclasses (``str``, ``int``, ``float``, ``bool``, ``bytes`` as base64, ``Literal``, ``X | None``, enums, tuples,
frozensets, FrozenMaps, nested dataclasses) and refuses anything else, so a field added to a record is stored without
changes here. Reading is strict too: a stored field the record no longer has, a value of the wrong type or bad base64
is a :class:`StateError`; a field the stored row lacks takes the field's default, so adding a field with a default
needs no migration. Removing or renaming a field, or adding one without a default, changes the meaning of stored
rows: bump :data:`SCHEMA_VERSION`, and an old file is then refused with a message rather than misread.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import functools
import json
import os
import sqlite3
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..homeserver import Homeserver, HttpRequest, HttpResponse
from ..homeserver._frozenmap import FrozenMap

__all__ = ["SCHEMA_VERSION", "TABLES", "StateError", "StateFile", "Table", "decode", "encode"]

SCHEMA_VERSION = 1


# Resolving a class's string annotations costs tens of microseconds; the classes do not change while running.
@functools.cache
def _hints(owner: type) -> dict[str, Any]:
    return typing.get_type_hints(owner)


class StateError(Exception):
    """The state file cannot be used; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class Table:
    """One FrozenMap field of one part of the homeserver (``registry`` or ``oauth``), stored as rows.

    ``nested`` names a FrozenMap field of the table's values that is stored as rows of its own, keyed by
    ``[outer key, inner key]`` in the table ``NAME.NESTED``, rather than inside the value's row: an account's devices,
    so that a device seen again rewrites one small row, not the account with every device it has. The field must
    have a default (the value is read back without it, then the rows are added).
    """

    part: str
    field: str
    nested: str | None = None

    @property
    def name(self) -> str:
        return f"{self.part}.{self.field}"

    @property
    def nested_name(self) -> str:
        return f"{self.name}.{self.nested}"

    def get(self, hs: Homeserver) -> FrozenMap[Any, Any]:
        value = getattr(getattr(hs, self.part), self.field)
        assert isinstance(value, FrozenMap)
        return value

    def put(self, hs: Homeserver, table: FrozenMap[Any, Any]) -> Homeserver:
        return replace(hs, **{self.part: replace(getattr(hs, self.part), **{self.field: table})})

    def types(self, hs: Homeserver) -> tuple[Any, Any]:
        """The key and value types, from the annotation of the field (``FrozenMap[K, V]``)."""
        owner: type = type(getattr(hs, self.part))
        key_type, value_type = typing.get_args(_hints(owner)[self.field])
        return key_type, value_type

    def nested_types(self, value_type: Any) -> tuple[Any, Any]:
        assert self.nested is not None
        key_type, inner_type = typing.get_args(_hints(value_type)[self.nested])
        return key_type, inner_type


TABLES = (
    Table("registry", "accounts", nested="devices"),
    Table("registry", "access_tokens"),
    Table("registry", "refresh_tokens"),
    Table("registry", "device_tokens"),
    Table("oauth", "clients"),
)


# ------------------------------------------------------------------------------------------------------- the codec


def _nullable(tp: Any) -> Any | None:
    """``X`` for ``X | None``; None for any other type."""
    if typing.get_origin(tp) in (types.UnionType, typing.Union):
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
        raise TypeError(f"cannot store a union other than X | None: {tp}")
    return None


def encode(tp: Any, value: Any, *, without: str | None = None) -> Any:
    """``value`` of type ``tp`` as JSON-ready data (a dataclass ``without`` one of its fields, if named)."""
    inner = _nullable(tp)
    if inner is not None:
        return None if value is None else encode(inner, value)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp in (str, int, bool, float) or origin is typing.Literal:
        return value
    if tp is bytes:
        return base64.b64encode(value).decode("ascii")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return value.value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return [encode(args[0], item) for item in value]
        return [encode(arg, item) for arg, item in zip(args, value, strict=True)]
    if origin is frozenset:
        return sorted((encode(args[0], item) for item in value), key=json.dumps)
    if origin is FrozenMap:
        return [[encode(args[0], key), encode(args[1], item)] for key, item in value.items()]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        fields = [f.name for f in dataclasses.fields(tp) if f.init and f.name != without]
        return {name: encode(hints[name], getattr(value, name)) for name in fields}
    raise TypeError(f"cannot store a value of type {tp}")


def _expect(data: Any, kind: type | tuple[type, ...], tp: Any) -> None:
    # bool is an int in Python but not in a stored int field, nor an int in a bool field.
    if not isinstance(data, kind) or (isinstance(data, bool) and kind is int):
        raise StateError(f"stored value {data!r:.60} is not a {tp}")


def decode(tp: Any, data: Any) -> Any:
    """The value of type ``tp`` that :func:`encode` turned into ``data``; :class:`StateError` if it is not one."""
    inner = _nullable(tp)
    if inner is not None:
        return None if data is None else decode(inner, data)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp in (str, int, bool):
        _expect(data, tp, tp)
        return data
    if tp is float:
        _expect(data, (int, float), tp)
        return float(data)
    if origin is typing.Literal:
        if not any(type(data) is type(arg) and data == arg for arg in args):
            raise StateError(f"stored value {data!r:.60} is not one of {args}")
        return data
    if tp is bytes:
        _expect(data, str, tp)
        try:
            return base64.b64decode(data.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise StateError(f"stored bytes {data!r:.60} are not base64") from None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise StateError(f"stored value {data!r:.60} is not a {tp.__name__}") from None
    if origin is tuple:
        _expect(data, list, tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], item) for item in data)
        if len(data) != len(args):
            raise StateError(f"stored value {data!r:.60} is not a {tp}")
        return tuple(decode(arg, item) for arg, item in zip(args, data, strict=True))
    if origin is frozenset:
        _expect(data, list, tp)
        return frozenset(decode(args[0], item) for item in data)
    if origin is FrozenMap:
        _expect(data, list, tp)
        table: FrozenMap[Any, Any] = FrozenMap()
        for pair in data:
            if not isinstance(pair, list) or len(pair) != 2:
                raise StateError(f"stored map entry {pair!r:.60} is not a [key, value] pair")
            table = table.set(decode(args[0], pair[0]), decode(args[1], pair[1]))
        return table
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        _expect(data, dict, tp)
        hints = _hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise StateError(f"stored {tp.__name__} has fields this version does not know: {', '.join(unknown)}")
        values = {}
        for name, f in fields.items():
            if name in data:
                values[name] = decode(hints[name], data[name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise StateError(f"stored {tp.__name__} lacks the field {name}, which has no default")
        return tp(**values)
    raise TypeError(f"cannot store a value of type {tp}")


def _text(tp: Any, value: Any, *, without: str | None = None) -> str:
    return json.dumps(encode(tp, value, without=without), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _rows(db: sqlite3.Connection, name: str) -> Iterator[tuple[Any, Any]]:
    for key, value in db.execute("SELECT key, value FROM records WHERE tbl = ? ORDER BY rowid", (name,)):
        try:
            yield json.loads(key), json.loads(value)
        except ValueError as exc:
            raise StateError(f"a stored row of {name} is not JSON: {exc}") from None


# ------------------------------------------------------------------------------------------------------- the file


class StateFile:
    """One SQLite file holding the :data:`TABLES` of one server (see the module docstring)."""

    def __init__(self, path: str, *, server_name: str) -> None:
        if not os.path.exists(path):
            # The file holds password and token digests: readable by its owner only.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS records"
                    " (tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (tbl, key))"
                )
                meta = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
                if not meta:
                    self._db.executemany(
                        "INSERT INTO meta (name, value) VALUES (?, ?)",
                        [("schema_version", str(SCHEMA_VERSION)), ("server_name", server_name)],
                    )
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path} is not a usable SQLite file: {exc}") from None
        if meta and meta.get("schema_version") != str(SCHEMA_VERSION):
            self.close()
            raise StateError(
                f"{path} has state schema version {meta.get('schema_version')}, this qrlogin reads {SCHEMA_VERSION}"
            )
        if meta and meta.get("server_name") != server_name:
            self.close()
            raise StateError(f"{path} holds the state of server {meta.get('server_name')}, not of {server_name}")
        self._saved: dict[str, FrozenMap[Any, Any]] = {}

    def close(self) -> None:
        self._db.close()

    def restore(self, hs: Homeserver) -> Homeserver:
        """``hs`` with every stored table in place of its own; remembers them as saved."""
        for table in TABLES:
            key_type, value_type = table.types(hs)
            restored: FrozenMap[Any, Any] = FrozenMap()
            for key, value in _rows(self._db, table.name):
                restored = restored.set(decode(key_type, key), decode(value_type, value))
            if table.nested is not None:
                inner_key_type, inner_type = table.nested_types(value_type)
                for pair, value in _rows(self._db, table.nested_name):
                    if not isinstance(pair, list) or len(pair) != 2:
                        raise StateError(f"a stored key of {table.nested_name} is not an [outer, inner] pair")
                    outer = restored.get(decode(key_type, pair[0]))
                    if outer is None:
                        raise StateError(f"a stored row of {table.nested_name} belongs to no row of {table.name}")
                    inner = getattr(outer, table.nested).set(decode(inner_key_type, pair[1]), decode(inner_type, value))
                    restored = restored.set(decode(key_type, pair[0]), replace(outer, **{table.nested: inner}))
            hs = table.put(hs, restored)
            self._saved[table.name] = restored
        return hs

    def save(self, hs: Homeserver) -> int:
        """Write what changed in ``hs`` since the last save or restore, in one transaction; returns the row count."""
        writes: list[tuple[str, str, str | None]] = []
        for table in TABLES:
            current = table.get(hs)
            saved = self._saved.get(table.name, FrozenMap())
            if current is not saved:
                writes.extend(self._changes(table, hs, current, saved))
        if writes:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for name, key, value in writes:
                    if value is None:
                        self._db.execute("DELETE FROM records WHERE tbl = ? AND key = ?", (name, key))
                    else:
                        self._db.execute(
                            "INSERT INTO records (tbl, key, value) VALUES (?, ?, ?)"
                            " ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value",
                            (name, key, value),
                        )
        for table in TABLES:
            self._saved[table.name] = table.get(hs)
        return len(writes)

    @staticmethod
    def _changes(
        table: Table, hs: Homeserver, current: FrozenMap[Any, Any], saved: FrozenMap[Any, Any]
    ) -> Iterator[tuple[str, str, str | None]]:
        key_type, value_type = table.types(hs)
        nested = table.nested
        removed: set[Any] = set()
        for key, present, value in current.changes_from(saved):
            key_text = _text(key_type, key)
            if nested is None:
                yield table.name, key_text, _text(value_type, value) if present else None
                continue
            inner_key_type, inner_type = table.nested_types(value_type)
            before = saved.get(key) if key not in removed else None
            inner_before = FrozenMap() if before is None else getattr(before, nested)
            inner_now = FrozenMap() if not present else getattr(value, nested)
            if not present:
                removed.add(key)
                yield table.name, key_text, None
            elif before is None or replace(before, **{nested: inner_now}) != value:
                yield table.name, key_text, _text(value_type, value, without=nested)
            for inner_key, inner_present, inner in inner_now.changes_from(inner_before):
                row_key = json.dumps([encode(key_type, key), encode(inner_key_type, inner_key)], separators=(",", ":"))
                yield table.nested_name, row_key, _text(inner_type, inner) if inner_present else None

    def after(self, hs: Homeserver, request: HttpRequest, response: HttpResponse, now_ms: int) -> Homeserver:
        """The app's ``after`` hook: persist the step's changes before its response is sent."""
        self.save(hs)
        return hs
