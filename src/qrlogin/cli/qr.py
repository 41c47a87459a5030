"""``qrlogin qr``: decode and build login QR payloads from the command line.

``decode`` accepts the payload as hex, base64 (padded or not) or, with ``-``, from standard input (raw bytes or
text); ``encode`` builds one from its fields and prints hex, base64, or the QR code itself as terminal art when the
optional ``qr`` extra (segno) is installed.
"""

from __future__ import annotations

import argparse
import binascii
import io
import json
import re
import sys
from typing import Any

from .. import qr
from ..encoding import b64decode, b64encode
from ..errors import Base64DecodeError, LocalProtocolError
from ..vocabulary import DeviceRole

__all__ = ["describe", "format_text", "read_payload", "register", "render_terminal"]

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_GENERATION_NAMES = {
    qr.Generation.V1: "v1 (MSC4108 2024, as deployed)",
    qr.Generation.V2: "v2 (MSC4108 seed era)",
    qr.Generation.V3: "v3 (MSC4388)",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("qr", help="decode or build a login QR payload")
    commands = parser.add_subparsers(dest="qr_command", required=True, metavar="ACTION")

    decode = commands.add_parser("decode", help="decode a QR payload and print its fields")
    decode.add_argument("payload", help="the payload as hex or base64, or - to read standard input")
    decode.add_argument("--format", choices=("auto", "hex", "base64", "raw"), default="auto")
    decode.add_argument("--json", action="store_true", help="print JSON instead of text")
    decode.add_argument("--allow-http", action="store_true", help="accept plain-http URLs (local test servers)")
    decode.set_defaults(func=_decode)

    encode = commands.add_parser("encode", help="build a QR payload from its fields")
    encode.add_argument("--generation", choices=[g.value for g in qr.Generation], required=True)
    encode.add_argument(
        "--intent", choices=[role.value for role in DeviceRole], required=True, help="which device shows the code"
    )
    encode.add_argument("--public-key", required=True, help="the generating device's X25519 key, base64")
    encode.add_argument("--rendezvous-url", help="v1: the rendezvous session URL")
    encode.add_argument("--rendezvous-id", help="v2/v3: the rendezvous session id")
    encode.add_argument("--server-name", help="v1 (existing device) and v2: the homeserver's server name")
    encode.add_argument("--base-url", help="v3: the homeserver's client-server API base URL")
    encode.add_argument("--unstable-prefix", action="store_true", help="v3: write IO_ELEMENT_MSC4388, not MATRIX")
    encode.add_argument("--id-length", choices=("u8", "u16"), default="u8", help="v3: rendezvous id length layout")
    encode.add_argument("--output", choices=("hex", "base64", "terminal"), default="hex")
    encode.set_defaults(func=_encode)


def read_payload(text: str, fmt: str) -> bytes:
    """The payload bytes named on the command line (``-`` reads standard input)."""
    if text == "-":
        raw = sys.stdin.buffer.read()
        if fmt == "raw":
            return raw
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            if fmt == "auto":
                return raw
            raise LocalProtocolError("standard input is not ASCII text; use --format raw") from None
    elif fmt == "raw":
        return text.encode()
    if fmt == "hex" or (fmt == "auto" and _HEX.fullmatch(text)):
        try:
            return binascii.unhexlify(text)
        except binascii.Error:
            raise LocalProtocolError("the payload is not valid hex") from None
    try:
        return b64decode(text, padding="allow")
    except Base64DecodeError as exc:
        raise LocalProtocolError(f"the payload is neither hex nor base64 ({exc})") from None


def describe(code: qr.QrCode) -> dict[str, Any]:
    """The decoded fields as plain JSON-compatible data."""
    fields: dict[str, Any] = {
        "generation": code.generation.value,
        "intent": code.intent.value,
        "public_key": b64encode(code.public_key),
    }
    for name in ("rendezvous_url", "rendezvous_id", "server_name", "base_url"):
        value = getattr(code, name)
        if value is not None:
            fields[name] = value
    if code.id_length_layout is not None:
        fields["unstable_prefix"] = code.unstable_prefix
        fields["id_length_layout"] = code.id_length_layout.value
    return fields


def format_text(code: qr.QrCode) -> str:
    shown_by = "the new device (it wants to sign in)" if code.generator_is_new_device else "the existing device"
    rows = [
        ("generation", _GENERATION_NAMES[code.generation]),
        ("shown by", shown_by),
        ("public key", b64encode(code.public_key)),
        ("rendezvous URL", code.rendezvous_url),
        ("rendezvous id", code.rendezvous_id),
        ("server name", code.server_name),
        ("base URL", code.base_url),
    ]
    if code.id_length_layout is not None:
        prefix = "IO_ELEMENT_MSC4388 (unstable)" if code.unstable_prefix else "MATRIX (stable)"
        rows += [("prefix", prefix), ("id length", code.id_length_layout.value)]
    return "\n".join(f"{label:<15} {value}" for label, value in rows if value is not None)


def _decode(args: argparse.Namespace) -> int:
    code = qr.decode(read_payload(args.payload, args.format), allow_http=args.allow_http)
    print(json.dumps(describe(code), indent=2) if args.json else format_text(code))
    return 0


def _encode(args: argparse.Namespace) -> int:
    generation = qr.Generation(args.generation)
    is_v3 = generation is qr.Generation.V3
    code = qr.QrCode(
        generation=generation,
        intent=DeviceRole(args.intent),
        public_key=b64decode(args.public_key, padding="allow"),
        rendezvous_url=args.rendezvous_url,
        rendezvous_id=args.rendezvous_id,
        server_name=args.server_name,
        base_url=args.base_url,
        unstable_prefix=args.unstable_prefix,
        id_length_layout=qr.IdLengthLayout(args.id_length) if is_v3 else None,
    )
    payload = qr.encode(code)
    if args.output == "terminal":
        print(render_terminal(payload))
    else:
        print(payload.hex() if args.output == "hex" else b64encode(payload))
    return 0


def render_terminal(payload: bytes) -> str:
    """The QR code as terminal art (needs the ``qr`` extra), or its hex if segno is not installed."""
    try:
        import segno
    except ImportError:
        return f"(install qrlogin[qr] to draw the QR code)\n{payload.hex()}"
    out = io.StringIO()
    segno.make(payload, error="m", micro=False).terminal(out=out, compact=True)
    return out.getvalue().rstrip("\n")
