"""The adapters' clock: Unix milliseconds that never jump.

The cores keep no clock; every adapter passes them ``now_ms`` read here. Nearly everything done with it is a
difference of two readings: a session's lifetime, the grace a last message gets before its session is deleted, a
deadline, a poll interval. The system clock may be stepped between two readings (NTP setting a freshly booted
machine's time, an operator, a virtual machine resumed), and a step of a few seconds would delete a session before the
peer read its last message, or keep one past its lifetime. So the wall clock is read once, when this module is first
imported, and advanced by the monotonic clock from then on: differences are elapsed time, and the readings are still
Unix time, as the protocol's absolute fields need (v2 ``expires_ts``, HTTP dates), off only by whatever the system
clock was corrected by since the process started. To a peer that is ordinary clock skew, which the rendezvous
client already tolerates (docs/rendezvous.md, "Client").
"""

from __future__ import annotations

import time

__all__ = ["unix_ms"]

_monotonic_ns = time.monotonic_ns
# What to add to a monotonic reading to make it Unix time, as it was when this module was imported.
_UNIX_OFFSET_NS = time.time_ns() - _monotonic_ns()


def unix_ms() -> int:
    """Unix milliseconds, advancing with the monotonic clock (never stepped back or forward)."""
    return (_monotonic_ns() + _UNIX_OFFSET_NS) // 1_000_000
