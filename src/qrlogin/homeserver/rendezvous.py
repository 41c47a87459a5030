"""The rendezvous layer's pure server core, installed behind the homeserver model's rendezvous hook.

Theory of operation
-------------------
:mod:`qrlogin.rendezvous.server` answers rendezvous requests with ``plan`` / ``create`` / ``handle`` over frozen
``Session`` values and leaves storage and entropy to its caller. :class:`RendezvousStore` is that caller for the
homeserver model: an immutable value holding the :class:`~qrlogin.rendezvous.server.ServerConfig`, the sessions in
a hashable :class:`~qrlogin.homeserver._frozenmap.FrozenMap` and a seeded entropy stream, with the
:class:`~qrlogin.homeserver.model.RendezvousService` signature
``handle(request, *, now_ms, authenticated) -> (store, response)``.

One request is one pure step: ``plan`` the request (both layers speak :mod:`qrlogin.http`'s values with origin-form
targets, so it passes through unchanged), then either ``create`` (insert the new session unless ``max_sessions`` live
sessions exist) or ``handle`` the addressed session (store what comes back; None deletes it). Each step draws 32
fresh bytes from the stream, so ids and tokens follow from the seed alone.

Creation modes (MSC4388 §POST: "The server can chose what level of authentication is required to create a rendezvous
session"): :class:`CreateMode` ``open`` lets anyone create, ``authenticated`` only a caller with a valid access token
of this homeserver (the model tells the store whether the request carried one), ``disabled`` nobody. The v3
discovery answer (``GET`` on the collection) says ``create_available`` for exactly the callers whose ``POST`` would be
let through, because both come from one decision; a refused ``POST`` of any generation is ``403 M_FORBIDDEN``.
Reading, writing and deleting an existing session never needs authentication (MSC4388: "Requires authentication:
No"), whatever the mode.

Expiry without scans: sessions are created with a fixed TTL, so with a clock that does not step back they expire in
the order they were created. The store keeps that order as a persistent queue (``expiry_queue``, position -> id, and
``queue_positions``, id -> position, between ``queue_head`` and ``queue_tail``). A create first pops the expired
sessions off the head, so each session is purged exactly once and the count of live sessions is ``len(sessions)``;
a session deleted early leaves the queue with it. If the clock steps back, a newer session can expire before an
older one still at the head; it is then purged when the head reaches it, and until then counts against
``max_sessions`` (a request addressing it still finds it expired and drops it).

All three generations are served on their default mounts (docs/protocol.md §6): v1 and v2 share the MSC4108 prefix and
are told apart by ``Content-Type``; v3 has the MSC4388 prefix. v1 answers a create with an absolute session URL,
built on the homeserver's base URL (``public_base_url``), so a device follows it to the same model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from ..http import HttpRequest, HttpResponse
from ..rendezvous import server as rz
from ._frozenmap import FrozenMap
from ._ids import IdSource
from .model import Homeserver, with_rendezvous

__all__ = ["CreateMode", "RendezvousStore", "install_rendezvous", "new_rendezvous_store"]


class CreateMode(enum.Enum):
    """Who may create a rendezvous session (MSC4388 §POST, the server's policy)."""

    OPEN = "open"
    AUTHENTICATED = "authenticated"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True, kw_only=True)
class RendezvousStore:
    """All rendezvous sessions of one homeserver, as a value."""

    config: rz.ServerConfig
    sessions: FrozenMap[str, rz.Session]
    entropy: IdSource
    create_mode: CreateMode = CreateMode.OPEN
    expiry_queue: FrozenMap[int, str] = field(default_factory=FrozenMap, repr=False)
    queue_positions: FrozenMap[str, int] = field(default_factory=FrozenMap, repr=False)
    queue_head: int = 0
    queue_tail: int = 0

    def may_create(self, *, authenticated: bool) -> bool:
        if self.create_mode is CreateMode.OPEN:
            return True
        return self.create_mode is CreateMode.AUTHENTICATED and authenticated

    def handle(
        self, request: HttpRequest, *, now_ms: int, authenticated: bool = False
    ) -> tuple[RendezvousStore, HttpResponse]:
        allowed = self.may_create(authenticated=authenticated)
        config = (
            self.config if allowed == self.config.create_available else replace(self.config, create_available=allowed)
        )
        step = rz.plan(config, request)
        if isinstance(step, HttpResponse):
            return self, step
        if isinstance(step, rz.Create) and not allowed:
            return self, _forbidden(step)
        entropy, raw = self.entropy.draw(rz.ENTROPY_BYTES)
        store = replace(self, entropy=entropy)
        if isinstance(step, rz.Create):
            session, response = rz.create(self.config, step, request, now_ms=now_ms, entropy=raw)
            if session is None:
                return store, response
            store = store._purge(now_ms)
            if len(store.sessions) >= self.config.max_sessions:
                return store, rz.capacity_error(self.config.max_sessions, step)
            return store._insert(session), response
        current = self.sessions.get(step.session_id)
        written, response = rz.handle(self.config, step, current, request, now_ms=now_ms, entropy=raw)
        if written is None:
            return store._delete(step.session_id), response
        if written is current:
            return store, response
        return replace(store, sessions=self.sessions.set(step.session_id, written)), response

    def _insert(self, session: rz.Session) -> RendezvousStore:
        position = self.queue_tail
        return replace(
            self,
            sessions=self.sessions.set(session.id, session),
            expiry_queue=self.expiry_queue.set(position, session.id),
            queue_positions=self.queue_positions.set(session.id, position),
            queue_tail=position + 1,
        )

    def _delete(self, session_id: str) -> RendezvousStore:
        position = self.queue_positions.get(session_id)
        sessions = self.sessions.remove(session_id)
        if position is None:
            return replace(self, sessions=sessions)
        return replace(
            self,
            sessions=sessions,
            expiry_queue=self.expiry_queue.remove(position),
            queue_positions=self.queue_positions.remove(session_id),
        )

    def _purge(self, now_ms: int) -> RendezvousStore:
        """Drop the expired sessions at the head of the queue (each session is dropped once: O(1) amortized)."""
        store = self
        head = self.queue_head
        while head < store.queue_tail:
            session_id = store.expiry_queue.get(head)
            if session_id is not None:
                if store.sessions[session_id].is_live(now_ms):
                    break
                store = store._delete(session_id)
            head += 1
        return store if head == self.queue_head else replace(store, queue_head=head)


def _forbidden(step: rz.Create) -> HttpResponse:
    # The rendezvous core's own error shape (CORS and no-store headers, stable or unstable codes for the mount).
    return rz._error(
        403,
        "M_FORBIDDEN",
        "This server does not let this requester create rendezvous sessions",
        generation=step.generation,
        stable=step.mount.stable,
    )


def new_rendezvous_store(
    *,
    base_url: str,
    seed: bytes,
    ttl_ms: int = rz.DEFAULT_TTL_MS,
    max_sessions: int = 1_000,
    create_mode: CreateMode = CreateMode.OPEN,
) -> RendezvousStore:
    """A store serving every generation on the default mounts, v1 session URLs on ``base_url``."""
    config = rz.ServerConfig(
        mounts=rz.default_mounts(),
        ttl_ms=ttl_ms,
        max_sessions=max_sessions,
        public_base_url=base_url,
        create_available=create_mode is CreateMode.OPEN,
    )
    return RendezvousStore(
        config=config, sessions=FrozenMap(), entropy=IdSource.from_seed(seed, "rendezvous"), create_mode=create_mode
    )


def install_rendezvous(
    hs: Homeserver,
    *,
    seed: bytes,
    ttl_ms: int = rz.DEFAULT_TTL_MS,
    max_sessions: int = 1_000,
    create_mode: CreateMode = CreateMode.OPEN,
) -> Homeserver:
    """``hs`` with a rendezvous store behind its hook (every generation, v1 URLs on ``hs.base_url``)."""
    store = new_rendezvous_store(
        base_url=hs.base_url, seed=seed, ttl_ms=ttl_ms, max_sessions=max_sessions, create_mode=create_mode
    )
    return with_rendezvous(hs, store)
