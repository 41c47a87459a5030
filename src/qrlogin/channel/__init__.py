"""Secure channels: the layer between the rendezvous (an untrusted shared slot) and the login handshake.

The generation-neutral events, effects, failure reasons and profiles live in :mod:`qrlogin.channel._common` and are
re-exported here. Each generation has its own module holding its state classes, its transitions table (``MACHINE``)
and ``transition`` function: :mod:`qrlogin.channel.ecies` (v1/v2, MSC4108) and
:mod:`qrlogin.channel.hpke` (v3, MSC4388).
"""

from __future__ import annotations

from ._common import (
    MAX_PAYLOAD_LENGTH,
    ChannelEffect,
    ChannelEvent,
    ChannelFailed,
    DeliverPlaintext,
    FailureReason,
    InitiateRequested,
    PayloadReceived,
    Profile,
    ReportChannelFailure,
    ReportEstablished,
    RetryRequested,
    SealRequested,
    SendPayload,
    check_code_digits,
    judge_check_code,
)

__all__ = [
    "MAX_PAYLOAD_LENGTH",
    "ChannelEffect",
    "ChannelEvent",
    "ChannelFailed",
    "DeliverPlaintext",
    "FailureReason",
    "InitiateRequested",
    "PayloadReceived",
    "Profile",
    "ReportChannelFailure",
    "ReportEstablished",
    "RetryRequested",
    "SealRequested",
    "SendPayload",
    "check_code_digits",
    "judge_check_code",
]
