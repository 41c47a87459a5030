"""The rendezvous layer's pure server core, installed behind the homeserver model's rendezvous hook.

Theory of operation
-------------------
:mod:`qrlogin.rendezvous.server` answers rendezvous requests with ``plan`` / ``create`` / ``handle`` over frozen
``Session`` values and leaves storage and entropy to its caller. :class:`RendezvousStore` is that caller for the
homeserver model: an immutable value holding the :class:`~qrlogin.rendezvous.server.ServerConfig`, the sessions in
a hashable :class:`~qrlogin.homeserver._frozenmap.FrozenMap` and a seeded entropy stream, with the
:class:`~qrlogin.homeserver.model.RendezvousService` signature ``handle(request, *, now_ms) -> (store, response)``.

One request is one pure step: ``plan`` the request (both layers speak :mod:`qrlogin.http`'s values with origin-form
targets, so it passes through unchanged), then either ``create`` (insert the new session unless ``max_sessions`` live
sessions exist; expired ones are dropped first) or ``handle`` the addressed session (store what comes back; None
deletes it). Each step draws 32 fresh bytes from the stream, so ids and tokens follow from the seed alone.

All three generations are served on their default mounts (docs/protocol.md §6): v1 and v2 share the MSC4108 prefix and
are told apart by ``Content-Type``; v3 has the MSC4388 prefix. v1 answers a create with an absolute session URL,
built on the homeserver's base URL (``public_base_url``), so a device follows it to the same model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..http import HttpRequest, HttpResponse
from ..rendezvous import server as rz
from ._frozenmap import FrozenMap
from ._ids import IdSource
from .model import Homeserver, with_rendezvous

__all__ = ["RendezvousStore", "install_rendezvous", "new_rendezvous_store"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RendezvousStore:
    """All rendezvous sessions of one homeserver, as a value."""

    config: rz.ServerConfig
    sessions: FrozenMap[str, rz.Session]
    entropy: IdSource

    def handle(self, request: HttpRequest, *, now_ms: int) -> tuple[RendezvousStore, HttpResponse]:
        step = rz.plan(self.config, request)
        if isinstance(step, HttpResponse):
            return self, step
        entropy, raw = self.entropy.draw(rz.ENTROPY_BYTES)
        store = replace(self, entropy=entropy)
        if isinstance(step, rz.Create):
            session, response = rz.create(self.config, step, request, now_ms=now_ms, entropy=raw)
            if session is None:
                return store, response
            live = FrozenMap({key: value for key, value in self.sessions.items() if value.is_live(now_ms)})
            if len(live) >= self.config.max_sessions:
                return replace(store, sessions=live), rz.capacity_error(self.config.max_sessions, step)
            return replace(store, sessions=live.set(session.id, session)), response
        current = self.sessions.get(step.session_id)
        written, response = rz.handle(self.config, step, current, request, now_ms=now_ms, entropy=raw)
        if written is None:
            sessions = self.sessions.remove(step.session_id)
        elif written is current:
            sessions = self.sessions
        else:
            sessions = self.sessions.set(step.session_id, written)
        return replace(store, sessions=sessions), response


def new_rendezvous_store(
    *, base_url: str, seed: bytes, ttl_ms: int = rz.DEFAULT_TTL_MS, max_sessions: int = 1_000
) -> RendezvousStore:
    """A store serving every generation on the default mounts, v1 session URLs on ``base_url``."""
    config = rz.ServerConfig(
        mounts=rz.default_mounts(), ttl_ms=ttl_ms, max_sessions=max_sessions, public_base_url=base_url
    )
    return RendezvousStore(config=config, sessions=FrozenMap(), entropy=IdSource.from_seed(seed, "rendezvous"))


def install_rendezvous(hs: Homeserver, *, seed: bytes, ttl_ms: int = rz.DEFAULT_TTL_MS) -> Homeserver:
    """``hs`` with a rendezvous store behind its hook (every generation, v1 URLs on ``hs.base_url``)."""
    return with_rendezvous(hs, new_rendezvous_store(base_url=hs.base_url, seed=seed, ttl_ms=ttl_ms))
