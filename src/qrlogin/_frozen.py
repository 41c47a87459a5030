"""Fast construction of the frozen values that the rendezvous server builds on every request.

Theory of operation
-------------------
Calling a frozen dataclass is the slowest way Python has to make a small object. The class call itself goes through
``type.__call__``, which packs the keyword arguments into a dict and unpacks them again for ``__init__``; then the
generated ``__init__`` stores each field with ``object.__setattr__(self, name, value)``, because the class's own
``__setattr__`` is the one that refuses every assignment. A server request builds five or six such values (the
request, its plan, the session, the store step, the answer), and building them was about a fifth of all the
instructions a request ran (``benchmarks/rendezvous_instructions.py``).

A *builder* makes the same value without either cost. It is a plain function, written next to its class, that takes
the fields as keyword-only arguments, makes an instance of the class's *fields twin* (:func:`fields_twin`: a plain
class with the very same ``__slots__``, so the same memory layout, and the ordinary ``__setattr__``), stores each
field with an ordinary attribute assignment (a direct slot store once the interpreter has specialised it), and then
gives the object its real class by assigning ``__class__``, which CPython allows between classes of identical
layout::

    _SessionFields = fields_twin(Session)

    @builds(Session)
    def build_session(*, id: str, ...) -> Session:
        session = new_object(_SessionFields)
        session.id = id
        ...
        session.__class__ = Session
        return session  # type: ignore[no-any-return]  (a twin until the line above)

What comes out is an instance of the dataclass and nothing else: fields, ``repr``, equality, hashing,
``dataclasses.replace``, copies and the frozen ``__setattr__`` are the dataclass's own, and the twin is never seen.
The classes stay plain ``@dataclass(frozen=True, slots=True, kw_only=True)`` values that anyone constructs by calling
them; a builder is an internal shortcut for a hot path and must give exactly what the class call gives:

* :func:`fields_twin` refuses (``TypeError``) a class that is not a frozen, slotted dataclass directly on ``object``,
  or has a field with a default factory or outside ``__init__``;
* :func:`builds` checks, when the module is imported, that the builder takes the class's fields, keyword-only, with
  the same defaults; a builder does what the class's ``__post_init__`` does to a field itself;
* ``tests/test_frozen.py`` holds every builder registered here (:data:`BUILDERS`) to its class's constructor.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["BUILDERS", "builds", "fields_twin", "new_object"]

F = TypeVar("F", bound=Callable[..., Any])

#: ``object.__new__``, looked up once: a builder's first step, an empty instance of a twin.
new_object = object.__new__

#: Every builder, by the class it builds (the tests find them here).
BUILDERS: dict[type, Callable[..., Any]] = {}


def _plain_fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__ or cls.__bases__ != (object,):
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass directly on object")
    fields = dataclasses.fields(cls)
    for field in fields:
        if not field.init or field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name}: a builder takes plain fields with plain defaults")
    return fields


def fields_twin(cls: type) -> type[Any]:
    """A plain class with ``cls``'s slots: the same layout, and an ordinary ``__setattr__`` for a builder to fill."""
    _plain_fields(cls)
    return type(f"{cls.__name__}Fields", (), {"__slots__": cls.__dict__["__slots__"], "__module__": cls.__module__})


def builds(cls: type) -> Callable[[F], F]:
    """Register the decorated function as the builder of ``cls``, once its parameters are checked against the fields:
    each field, in order, keyword-only, with the field's default (``TypeError`` otherwise)."""
    fields = _plain_fields(cls)

    def register(function: F) -> F:
        parameters = list(inspect.signature(function).parameters.values())
        expected = [(field.name, field.default) for field in fields]
        given = [
            (parameter.name, dataclasses.MISSING if parameter.default is inspect.Parameter.empty else parameter.default)
            for parameter in parameters
        ]
        if given != expected or any(parameter.kind is not inspect.Parameter.KEYWORD_ONLY for parameter in parameters):
            raise TypeError(f"{function.__name__} does not take {cls.__name__}'s fields keyword-only: {given}")
        BUILDERS[cls] = function
        return function

    return register
