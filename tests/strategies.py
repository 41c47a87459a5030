"""Hypothesis strategies shared by property tests and fuzz runners."""

from __future__ import annotations

from hypothesis import strategies as st

from qrlogin import qr
from qrlogin.vocabulary import DeviceRole

OPAQUE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"

opaque_ids = st.text(alphabet=OPAQUE_ALPHABET, min_size=1, max_size=255)
hosts = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}", fullmatch=True)
paths = st.from_regex(r"(/[A-Za-z0-9._~%-]{0,20}){0,4}", fullmatch=True)
ports = st.none() | st.integers(min_value=1, max_value=65535)


@st.composite
def https_urls(draw: st.DrawFn, scheme: str = "https") -> str:
    port = draw(ports)
    return f"{scheme}://{draw(hosts)}{'' if port is None else f':{port}'}{draw(paths)}"


server_names = st.text(min_size=1, max_size=300).filter(lambda s: len(s.encode()) <= 0xFFFF)
public_keys = st.binary(min_size=32, max_size=32)


@st.composite
def qr_codes(draw: st.DrawFn) -> qr.QrCode:
    generation = draw(st.sampled_from(qr.Generation))
    intent = draw(st.sampled_from(DeviceRole))
    key = draw(public_keys)
    if generation is qr.Generation.V1:
        return qr.QrCode(
            generation=generation,
            intent=intent,
            public_key=key,
            rendezvous_url=draw(https_urls()),
            server_name=draw(server_names) if intent is DeviceRole.EXISTING else None,
        )
    if generation is qr.Generation.V2:
        return qr.QrCode(
            generation=generation,
            intent=intent,
            public_key=key,
            rendezvous_id=draw(opaque_ids),
            server_name=draw(server_names),
        )
    return qr.QrCode(
        generation=generation,
        intent=intent,
        public_key=key,
        rendezvous_id=draw(opaque_ids),
        base_url=draw(https_urls()),
        unstable_prefix=draw(st.booleans()),
        id_length_layout=draw(st.sampled_from(qr.IdLengthLayout)),
    )
