"""How a device finishes its part of the rendezvous after its login ended.

Theory of operation
-------------------
The login machine reports its outcome at once (``ReportOutcome``), but the rendezvous may still hold work that the
peer depends on. The rules, applied after every step until none applies (:func:`pump`):

1. **A last message is owed.** The login's last act may be a message for the peer: ``m.login.secrets`` on success,
   ``m.login.failure`` when this device gives up (``docs/login.md``, "Failures"). The rendezvous is one slot and the
   devices take turns (``docs/protocol.md`` §1), so the message is sealed only on this device's turn, when the peer's
   payload has just been read, with that read's token; until then the device keeps polling
   (:class:`~qrlogin.device.AwaitingTurn`). A device that scanned the QR code cannot delete the session, so the
   message is the only way its peer learns the sign-in is off: it waits for its turn as long as the session lives
   (the rendezvous client ends at the session's expiry, or at ``DeviceConfig.timeout_ms``). The device that created
   the session waits only until its deletion time: deleting the session tells the peer too (a 404 ends it).
   A channel that cannot seal (it failed, or was never established) has nothing to carry: the message is dropped.
2. **A write is on its way.** It is confirmed (or refused) before anything else happens, so the peer can read it
   (:class:`~qrlogin.device.AwaitingLastWrite`).
3. **The joiner lets go.** The device that scanned the QR code is done.
4. **The creator deletes the session**, but not before ``DeleteRendezvous.not_before_ms``: a last message in the slot
   gets a grace period (``FINAL_MESSAGE_GRACE_MS``) for the peer to read it
   (:class:`~qrlogin.device.AwaitingDeletionTime`), then the ``DELETE`` (:class:`~qrlogin.device.AwaitingDeletion`).
   A session still being created when the user cancelled is deleted once the POST is answered.

When the rendezvous session has ended (deleted, expired, or the client gave up), the device is done.
"""

from __future__ import annotations

from ..rendezvous import client as rz
from ..vocabulary import QrSide
from .states import sealable
from .work import Work, ended, writing

__all__ = ["pump"]


def pump(work: Work, now_ms: int) -> bool:
    """Apply the first closing rule that has something to do now; False when the device must wait (or is done)."""
    rendezvous = work.rendezvous
    if ended(rendezvous):
        return False
    assert rendezvous is not None
    if work.outbox:
        if not sealable(work.channel):
            work.outbox.clear()
            return True
        if work.our_turn:
            work.seal_next()
            return True
        if work.side is QrSide.SHOWS and work.delete_at_ms is not None and now_ms >= work.delete_at_ms:
            work.outbox.clear()  # the peer had its time; the deletion tells it instead
            return True
        return False
    if writing(rendezvous):
        return False
    if work.side is QrSide.SCANS:
        work.rendezvous = None
        return True
    if isinstance(rendezvous, rz.Creating | rz.Deleting):
        return False
    if work.delete_at_ms is not None and now_ms < work.delete_at_ms:
        return False
    work.rz_events.append(rz.CloseRequested())
    work.delete_at_ms = None
    return True
