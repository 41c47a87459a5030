"""The thin translation between a secure channel's effects and the login machines' events.

The login machines never see keys, nonces or payload strings, and the channel machines never see ``m.login.*``
JSON. A driver connects them with two pure functions over the channel layer's generation-neutral vocabulary
(:mod:`qrlogin.channel`), so the same glue serves ECIES (v1/v2) and HPKE (v3):

========================================  ==================================================
channel effect                            login event
========================================  ==================================================
``ReportEstablished``                     :class:`~qrlogin.login.events.ChannelSecured`
``DeliverPlaintext(plaintext)``             :class:`~qrlogin.login.events.MessageReceived`
``ReportChannelFailure(reason)``                 :class:`~qrlogin.login.events.ChannelClosed`
========================================  ==================================================

``ReportEstablished`` on G is emitted only after the user's check code matched, which is exactly the condition
the login machines need before G acts on anything. In the other direction a login
:class:`~qrlogin.login.events.SendMessage` becomes the channel event ``SealRequested`` carrying the serialized
message; every other login effect is for the application (HTTP, browser, rendezvous deletion, outcome).
"""

from __future__ import annotations

from ..channel import ChannelEffect, DeliverPlaintext, ReportChannelFailure, ReportEstablished, SealRequested
from .events import ChannelClosed, ChannelSecured, Effect, Event, MessageReceived, SendMessage
from .messages import serialize_message

__all__ = ["channel_effect_to_login_event", "login_effect_to_channel_event"]


def channel_effect_to_login_event(effect: ChannelEffect) -> Event | None:
    """The login event a channel effect means, or ``None`` when it is for the rendezvous or the user."""
    if isinstance(effect, ReportEstablished):
        return ChannelSecured()
    if isinstance(effect, DeliverPlaintext):
        return MessageReceived(plaintext=effect.plaintext)
    if isinstance(effect, ReportChannelFailure):
        return ChannelClosed()
    return None


def login_effect_to_channel_event(effect: Effect, *, sequence_token: str | None = None) -> SealRequested | None:
    """The channel event a login effect needs, or ``None`` when it is not for the channel."""
    if isinstance(effect, SendMessage):
        return SealRequested(plaintext=serialize_message(effect.message), sequence_token=sequence_token)
    return None
