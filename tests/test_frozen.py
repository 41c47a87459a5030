"""The values whose ``__init__`` is written by hand (qrlogin._frozen) construct exactly as the dataclass would."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any

import pytest

import qrlogin
from qrlogin.http import HttpRequest, HttpResponse
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous.server import Access, Create, Inserting, Reading, Session, default_mounts

HAND_WRITTEN = [HttpRequest, HttpResponse, Session, Create, Access, Inserting, Reading]


def _dataclasses_with_an_init_of_their_own() -> set[type]:
    found = set()
    for info in pkgutil.walk_packages(qrlogin.__path__, "qrlogin."):
        if info.name.endswith(".__main__"):
            continue  # runs the command line
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and value.__module__ == module.__name__
                and dataclasses.is_dataclass(value)
                and value.__init__.__code__.co_filename != "<string>"  # a dataclass writes its own in "<string>"
            ):
                found.add(value)
    return found


def test_every_dataclass_with_a_hand_written_init_is_checked_here() -> None:
    assert _dataclasses_with_an_init_of_their_own() == set(HAND_WRITTEN)


@pytest.mark.parametrize("cls", HAND_WRITTEN, ids=lambda cls: cls.__name__)
def test_init_takes_the_fields_keyword_only_with_their_defaults(cls: type) -> None:
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = [field for field in dataclasses.fields(cls) if field.init]
    assert [parameter.name for parameter in parameters] == [field.name for field in fields]
    for parameter, field in zip(parameters, fields, strict=True):
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        expected = inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default
        assert parameter.default == expected, field.name


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


@pytest.mark.parametrize("cls", HAND_WRITTEN, ids=lambda cls: cls.__name__)
def test_each_field_holds_what_was_given_and_the_value_stays_a_frozen_dataclass(cls: type) -> None:
    values = _sample(cls)
    made = cls(**values)
    for name, value in values.items():
        assert getattr(made, name) == value
    assert made == cls(**values) and hash(made) == hash(cls(**values))
    assert dataclasses.replace(made) == made
    assert copy.deepcopy(made) == made and copy.copy(made) == made
    name = next(iter(values))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, name, values[name])


def test_headers_are_lowercased_on_construction_as_before() -> None:
    request = HttpRequest(method="GET", target="/", headers=(("Content-Type", "a"),))
    response = HttpResponse(status=200, headers={"X-A": "1"})  # type: ignore[arg-type]
    assert request.headers == (("content-type", "a"),) and response.headers == (("x-a", "1"),)
    assert dataclasses.replace(request, headers=(("B", "2"),)).headers == (("b", "2"),)
