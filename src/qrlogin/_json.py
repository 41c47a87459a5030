"""Strict JSON for everything that comes from the network: login messages, HTTP bodies, server responses.

Theory of operation
-------------------
``json.loads`` is almost right for hostile input but not quite: it keeps the *last* of duplicate keys (so two
parsers can disagree about one message), accepts ``NaN``/``Infinity``, turns ``1e400`` into ``inf``, admits
lone UTF-16 surrogates, and recurses once per nesting level so that ``[[[[...]]]]`` raises
:class:`RecursionError` from deep in the standard library. :func:`loads_object` closes each gap before or
around the call:

1. the size is checked first (a caller-chosen byte limit, 4096 for channel messages, docs/threats.md T6);
2. the bytes must be strict UTF-8;
3. ``object_pairs_hook`` rejects duplicate keys, ``parse_constant`` rejects ``NaN``/``Infinity``,
   ``parse_float`` rejects overflow to infinity;
4. nesting deeper than ``max_depth`` is refused: nesting deep enough to reach the interpreter's recursion limit
   stops the (recursion-guarded) C scanner with :class:`RecursionError`, caught here, and anything shallower is
   measured on the parsed value by an iterative walk, which for a flat object is one look at its values;
5. a final walk rejects strings that cannot be encoded as UTF-8 (lone surrogates from ``\\ud800`` escapes).

Whatever goes wrong, the only exception that leaves this module is :class:`JsonError`, a
:class:`~qrlogin.errors.RemoteProtocolError`. Its subclass :class:`JsonSyntaxError` means "this is not JSON at all"
(bad UTF-8, bad syntax, too deep, too large); every other :class:`JsonError` means "JSON, but not acceptable"
(duplicate keys, non-finite numbers, lone surrogates, not an object). Servers map the two onto Matrix's
``M_NOT_JSON`` and ``M_BAD_JSON``.

This is the one strict JSON reader of the project; the login, rendezvous and homeserver layers all call it.
"""

from __future__ import annotations

import json
import json.scanner
import math
from collections.abc import Callable
from typing import Any

from .errors import RemoteProtocolError

__all__ = ["DEFAULT_MAX_DEPTH", "JsonError", "JsonObject", "JsonSyntaxError", "dumps", "json_string", "loads_object"]

DEFAULT_MAX_DEPTH = 16

JsonObject = dict[str, Any]


class JsonError(RemoteProtocolError):
    """Input is not a strict JSON object within the limits."""


class JsonSyntaxError(JsonError):
    """Input is not JSON at all: not UTF-8, malformed, nested too deeply or larger than the limit."""


def _reject_constant(name: str) -> Any:
    raise JsonError(f"non-finite number {name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonError("number overflows to infinity")
    return value


def _unique_pairs(pairs: list[tuple[str, Any]]) -> JsonObject:
    result: JsonObject = dict(pairs)
    if len(result) != len(pairs):  # a repeated key kept only its last value
        raise JsonError("duplicate key in object")
    return result


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than ``limit`` in ``value`` (a container is depth 1); iterative."""
    if not isinstance(value, (dict, list)):
        return False
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _check_strings(value: Any) -> None:
    # Iterative, so a wide (already depth-bounded) value costs no recursion either.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise JsonError("string holds a lone surrogate") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# One decoder for every call: json.loads with hooks would build a new JSONDecoder (and its scanner) each time.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_pairs, parse_constant=_reject_constant, parse_float=_finite_float)
# The scanner JSONDecoder builds for itself (its scan_once), built here from the same decoder as context.
_SCAN = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]
_JSON_WHITESPACE = " \t\n\r"  # RFC 8259 §2


def loads_object(data: bytes | str, *, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH) -> JsonObject:
    """Parse ``data`` as one strict JSON object, or raise :class:`JsonError`."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise JsonSyntaxError(f"JSON text of {len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonSyntaxError("JSON text is not valid UTF-8") from None
    # The decoder's scanner directly (JSONDecoder.decode adds two Python frames and two regex matches around it):
    # one value, with nothing but JSON whitespace around it.
    start = len(text) - len(text.lstrip(_JSON_WHITESPACE)) if text[:1].isspace() else 0
    try:
        value, end = _SCAN(text, start)
    except JsonError:
        raise
    except StopIteration:  # no value where one must start
        raise JsonSyntaxError("invalid JSON: JSONDecodeError") from None
    except RecursionError:
        # The scanner guards its own recursion (the interpreter's limit): nesting that deep is refused as such.
        raise JsonSyntaxError(f"JSON nesting deeper than {max_depth}") from None
    except (ValueError, TypeError) as exc:  # ValueError: JSONDecodeError and int-string conversion limits
        raise JsonSyntaxError(f"invalid JSON: {type(exc).__name__}") from None
    if end != len(text) and text[end:].strip(_JSON_WHITESPACE):
        raise JsonSyntaxError("invalid JSON: JSONDecodeError")  # more after the value
    # Depth is checked on the value: the scanner's recursion is bounded by the interpreter's (caught above). A text
    # with no bracket after its first holds no container in a container, the usual case, and skips the walk.
    nests = text.find("{", start + 1) >= 0 or text.find("[", start + 1) >= 0
    if nests and _deeper_than(value, max_depth):
        raise JsonSyntaxError(f"JSON nesting deeper than {max_depth}")
    if not isinstance(value, dict):
        raise JsonError("JSON text is not an object")
    if "\\u" in text:
        # Valid UTF-8 cannot spell a surrogate, so a lone one can only come from a \u escape.
        _check_strings(value)
    return value


def _compact_encoder() -> Any:
    # json.dumps with any option builds a new encoder on every call, which costs more than encoding a small object;
    # the standard library's C encoder is built once instead (None where the C accelerator is missing).
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    default = json.JSONEncoder().default  # raises TypeError for what JSON cannot hold
    # No cycle markers: the values written here are trees the project builds (a cycle still ends in RecursionError).
    return make(None, default, json.encoder.encode_basestring, None, ":", ",", False, False, False)


_COMPACT = _compact_encoder()


#: ``text`` as a JSON string literal, quotes included, exactly as :func:`dumps` writes a string (the standard
#: library's own escaper: control characters, quote and backslash escaped, everything else as itself).
json_string: Callable[[str], str] = json.encoder.encode_basestring


def dumps(value: JsonObject) -> bytes:
    """Compact, deterministic UTF-8 JSON (insertion order kept, no NaN): the project's one JSON writer."""
    if _COMPACT is not None:
        return "".join(_COMPACT(value, 0)).encode("utf-8")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
