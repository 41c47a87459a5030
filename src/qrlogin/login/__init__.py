"""The MSC4108 login handshake over an established secure channel.

* :mod:`.messages`: the ``m.login.*`` messages, strict parse and serialize.
* :mod:`.oauth`: the new device's RFC 8628 steps as request builders and response parsers.
* :mod:`.new_device`, :mod:`.existing_device`: the two pure machines, each for both QR directions.
* :mod:`.events`: the events and effects they share. HTTP travels as :mod:`qrlogin.http`'s plain values (absolute-URL
  targets); ``HttpRequest.authenticated`` asks the adapter to add the signed-in user's access token, which the core
  never holds.

See ``docs/login.md`` for the state diagrams and the message order of each combination.
"""

from __future__ import annotations

from ..http import HttpRequest, HttpResponse
from . import existing_device, new_device
from .events import (
    ChannelClosed,
    ChannelSecured,
    DeleteRendezvous,
    LocalReason,
    MessageReceived,
    ReportLoginFailure,
    ReportLoginSuccess,
    SendMessage,
)
from .messages import FailureReason, MessageError, parse_message, serialize_message

__all__ = [
    "ChannelClosed",
    "ChannelSecured",
    "DeleteRendezvous",
    "FailureReason",
    "HttpRequest",
    "HttpResponse",
    "LocalReason",
    "MessageError",
    "MessageReceived",
    "ReportLoginFailure",
    "ReportLoginSuccess",
    "SendMessage",
    "existing_device",
    "new_device",
    "parse_message",
    "serialize_message",
]
