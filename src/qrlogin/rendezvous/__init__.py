"""The insecure rendezvous session (docs/protocol.md §6): a pure server core and a pure client session machine.

* :mod:`qrlogin.rendezvous.server`: ``plan`` / ``create`` / ``handle`` over frozen sessions, a request answered in
  steps that each name one store operation (``begin`` / ``after_*``), the store interfaces (awaitable ``Store``,
  in-process ``SyncStore``) with an atomic compare-and-set, an in-memory store, and :class:`RendezvousServer` driving
  the steps over it.
* :mod:`qrlogin.rendezvous.limits`: the per-client token buckets on creates and writes.
* :mod:`qrlogin.rendezvous.client`: the session machine one device runs (what to POST, GET, PUT or DELETE next).
* :mod:`qrlogin.rendezvous._http`: the API generations, id grammar and strict JSON reading both share; the plain
  request/response values they speak are :mod:`qrlogin.http`'s.

HTTP itself lives in the adapters (:mod:`qrlogin.adapters.asgi`, :mod:`qrlogin.adapters.httpx_client`).
"""

from ._http import MAX_PAYLOAD_BYTES, ApiGeneration

__all__ = ["MAX_PAYLOAD_BYTES", "ApiGeneration"]
