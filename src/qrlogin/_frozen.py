"""Fast construction of the frozen values that the rendezvous server builds on every request.

Theory of operation
-------------------
Calling a frozen dataclass is the slowest way Python has to make a small object. The class call itself goes through
``type.__call__``, which packs the keyword arguments into a dict and unpacks them again for ``__init__``; then the
generated ``__init__`` stores each field with ``object.__setattr__(self, name, value)``, because the class's own
``__setattr__`` is the one that refuses every assignment. A server request builds five or six such values (the
request, its plan, the session, the store step, the answer), and building them was about a fifth of all the
instructions a request ran (``benchmarks/rendezvous_instructions.py``).

:func:`builder` returns a function that makes the same value without either cost. For a slotted dataclass it creates
a *fields twin* once: a plain class with the very same ``__slots__``, so the same memory layout, and the ordinary
``__setattr__``. The builder takes the fields as keyword-only arguments (a plain function call), makes a twin, stores
each field with an ordinary attribute assignment (a direct slot store once the interpreter has specialised it), and
then gives the object its real class by assigning ``__class__``, which CPython allows between classes of identical
layout. What comes out is an instance of the dataclass and nothing else: fields, ``repr``, equality, hashing,
``dataclasses.replace``, copies and the frozen ``__setattr__`` are the dataclass's own, and the twin is never seen.

The classes stay plain ``@dataclass(frozen=True, slots=True, kw_only=True)`` values that anyone constructs by calling
them. A builder is an internal shortcut for a hot path, and it must give exactly what the class call gives:

* it refuses (``TypeError``) a class that is not a frozen, slotted dataclass directly on ``object``, or has a field
  with a default factory or outside ``__init__``;
* the class's ``__post_init__`` does not run; a class that has one names, in ``convert``, the function it applies to
  each field, and the builder applies the same functions. ``tests/test_frozen.py`` checks every builder in the package
  against its class's own constructor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

__all__ = ["builder"]

T = TypeVar("T")

#: Every builder made, by the class it builds (the tests find them here).
BUILDERS: dict[type, Callable[..., Any]] = {}


def builder(cls: type[T], *, convert: Mapping[str, Callable[[Any], Any]] | None = None) -> Callable[..., T]:
    """A keyword-only function that returns ``cls(**fields)``, without the class call's cost (see the module text)."""
    convert = dict(convert or {})
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__ or cls.__bases__ != (object,):
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass directly on object")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    for field in fields:
        if not field.init or field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{field.name}: a builder takes plain fields with plain defaults")
    names = [field.name for field in fields]
    if hasattr(cls, "__post_init__") and not convert:
        raise TypeError(f"{cls.__name__} has a __post_init__: name what it does to each field in convert")
    if set(convert) - set(names):
        raise TypeError(f"convert names fields {cls.__name__} does not have: {sorted(set(convert) - set(names))}")
    twin = type(f"{cls.__name__}Fields", (), {"__slots__": cls.__dict__["__slots__"], "__module__": cls.__module__})
    namespace: dict[str, Any] = {"_new": object.__new__, "_twin": twin, "_cls": cls}
    parameters = []
    for field in fields:
        if field.default is dataclasses.MISSING:
            parameters.append(field.name)
        else:
            namespace[f"_default_{field.name}"] = field.default
            parameters.append(f"{field.name}=_default_{field.name}")
    lines = [f"def build_{cls.__name__}(*, {', '.join(parameters)}):", "    value = _new(_twin)"]
    for name in names:
        if name in convert:
            namespace[f"_convert_{name}"] = convert[name]
            lines.append(f"    value.{name} = _convert_{name}({name})")
        else:
            lines.append(f"    value.{name} = {name}")
    lines += ["    value.__class__ = _cls", "    return value"]
    # The way dataclasses writes __init__: one plain function per class, from the class's own field names (Python
    # identifiers, never outside input).
    exec("\n".join(lines), namespace)  # noqa: S102
    built: Callable[..., T] = namespace[f"build_{cls.__name__}"]
    built.__qualname__ = f"builder({cls.__qualname__})"
    built.__module__ = cls.__module__
    BUILDERS[cls] = built
    return built
