"""Fast construction of the frozen values that every request or simulated step builds.

A frozen dataclass's generated ``__init__`` stores each field with ``object.__setattr__(self, name, value)``, which
goes through the generic attribute machinery (a type lookup, then the slot's descriptor) and costs about twice what
calling the slot descriptor's own setter costs. For the handful of values built on every request of the rendezvous
server, that difference is a measurable share of the whole request (benchmarks/rendezvous_instructions.py); the
simulator builds the same values, but there it is lost in the rest of a step (its instructions moved by under 1%).

Those classes stay plain ``@dataclass(frozen=True, slots=True, kw_only=True)`` values: fields, ``repr``, equality,
hashing, ``dataclasses.replace`` and the frozen ``__setattr__`` are the dataclass's own. They only write their
``__init__`` by hand (a dataclass keeps an ``__init__`` its class defines), with the same keyword-only parameters
and defaults as their fields, storing through the setters :func:`slot_setters` returns once the class exists.
``tests/test_frozen.py`` checks each such ``__init__`` against its fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

__all__ = ["slot_setters"]

Setter = Callable[[Any, Any], None]


def slot_setters(cls: type) -> tuple[Setter, ...]:
    """The slot setters of a slotted dataclass's fields, in field order (``setter(instance, value)``)."""
    return tuple(cls.__dict__[field.name].__set__ for field in fields(cls))
