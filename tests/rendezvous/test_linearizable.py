"""Many clients, several server processes sharing one store, arbitrary interleavings: the history is linearizable.

Each request is split the way RendezvousServer.respond runs it: ``prepare`` (read the session, run the pure core)
and, for a request that writes, ``commit`` (compare-and-set). Hypothesis interleaves the steps of many requests over
two server objects that share one InMemoryStore. A request that changes nothing (a GET, a refused write, a v3 retry)
is answered at its read with no second store operation, as respond does; one that writes commits only if the
session is still exactly what it read. So the response must be what a sequential reference model answers in the
state of that read, and a write takes its effect on the model at its commit, which must find the model unchanged
since the read. Every write carries a unique marker, so the checks "no write is lost" and "no write is applied
twice" are exact.
"""

from __future__ import annotations

import json

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from qrlogin.http import HttpRequest, HttpResponse
from qrlogin.rendezvous import ApiGeneration
from qrlogin.rendezvous.server import (
    V1_V2_UNSTABLE_PREFIX,
    V3_UNSTABLE_PREFIX,
    Access,
    InMemoryStore,
    Prepared,
    RendezvousServer,
    ServerConfig,
    plan,
)
from tests.rendezvous.rendezvous_util import Entropy, jbody

CLIENTS = 4


class SharedStoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.config = ServerConfig()
        store = InMemoryStore()
        self.servers = (RendezvousServer(self.config, store), RendezvousServer(self.config, store))
        self.entropy = Entropy(b"linearizable")
        self.now_ms = 0
        self.generation: ApiGeneration | None = None
        self.path = ""
        # The sequential model: current data and token, and the log of applied writes.
        self.model_data = ""
        self.model_token = ""
        self.applied: list[str] = []
        self.tokens_seen: set[str] = set()
        # Per client: last token it saw, its pending request, that request's current attempt, and its acked writes.
        self.view: list[str] = []
        self.pending: list[HttpRequest | None] = [None] * CLIENTS
        self.attempt: list[tuple[Prepared, tuple[str, str]] | None] = [None] * CLIENTS
        self.acked: list[str] = []
        self.serial = 0

    @precondition(lambda self: self.generation is None)
    @rule(generation=st.sampled_from([ApiGeneration.V2, ApiGeneration.V3]))
    def create(self, generation: ApiGeneration) -> None:
        prefix = V3_UNSTABLE_PREFIX if generation is ApiGeneration.V3 else V1_V2_UNSTABLE_PREFIX
        request = HttpRequest(
            method="POST", target=prefix, headers=(("content-type", "application/json"),), body=jbody(data="init")
        )
        response = self.servers[0].respond(request, now_ms=self.now_ms, entropy=self.entropy())
        content = json.loads(response.body)
        self.generation = generation
        self.path = f"{prefix}/{content['id']}"
        self.model_data, self.model_token = "init", content["sequence_token"]
        self.tokens_seen.add(self.model_token)
        self.view = [self.model_token] * CLIENTS

    def _ready(self) -> bool:
        return self.generation is not None

    @precondition(_ready)
    @rule(client=st.integers(0, CLIENTS - 1), stale=st.booleans())
    def begin_put(self, client: int, stale: bool) -> None:
        if self.pending[client] is not None:
            return
        self.serial += 1
        token = "0.stale" if stale else self.view[client]
        body = jbody(sequence_token=token, data=f"w{self.serial}")
        self.pending[client] = HttpRequest(method="PUT", target=self.path, body=body)

    @precondition(_ready)
    @rule(client=st.integers(0, CLIENTS - 1))
    def begin_get(self, client: int) -> None:
        if self.pending[client] is None:
            self.pending[client] = HttpRequest(method="GET", target=self.path)

    @precondition(_ready)
    @rule(client=st.integers(0, CLIENTS - 1))
    def begin_retry_of_acked_write(self, client: int) -> None:
        """A client whose PUT response was lost resends the identical request (with its stale token)."""
        if self.pending[client] is None and self.acked:
            data = self.acked[-1]
            self.pending[client] = HttpRequest(
                method="PUT", target=self.path, body=jbody(sequence_token="0.old", data=data)
            )

    @precondition(_ready)
    @rule(client=st.integers(0, CLIENTS - 1), server=st.integers(0, 1))
    def prepare(self, client: int, server: int) -> None:
        request = self.pending[client]
        if request is None:
            return
        step = plan(self.config, request)
        assert isinstance(step, Access)
        attempt = self.servers[server].prepare(step, request, now_ms=self.now_ms, entropy=self.entropy())
        snapshot = (self.model_data, self.model_token)
        if not attempt.changes:  # answered at its read, as respond does: no confirmation
            self.attempt[client], self.pending[client] = None, None
            self._linearize(client, request, attempt.response, snapshot)
            return
        self.attempt[client] = (attempt, snapshot)

    @precondition(_ready)
    @rule(client=st.integers(0, CLIENTS - 1), server=st.integers(0, 1))
    def commit(self, client: int, server: int) -> None:
        prepared, request = self.attempt[client], self.pending[client]
        if prepared is None or request is None:
            return
        self.attempt[client] = None
        attempt, snapshot = prepared
        if not self.servers[server].commit(attempt):
            return  # lost the race: this request is still pending and will be prepared again
        self.pending[client] = None
        assert attempt.changes
        assert snapshot == (self.model_data, self.model_token), "a write committed over a session it did not read"
        self._linearize(client, request, attempt.response, snapshot)

    def _linearize(self, client: int, request: HttpRequest, response: HttpResponse, snapshot: tuple[str, str]) -> None:
        content = json.loads(response.body)
        data, token = snapshot
        if request.method == "GET":
            assert response.status == 200
            assert (content["data"], content["sequence_token"]) == (data, token)
            self.view[client] = token
            return
        sent = json.loads(request.body)
        if sent["sequence_token"] == token:
            assert response.status == 200
            new_token = content["sequence_token"]
            assert new_token not in self.tokens_seen, "a token was reused"
            self.tokens_seen.add(new_token)
            self.model_data, self.model_token = sent["data"], new_token
            self.applied.append(sent["data"])
            self.acked.append(sent["data"])
            self.view[client] = new_token
        elif self.generation is ApiGeneration.V3 and sent["data"] == data:
            assert response.status == 200
            assert content["sequence_token"] == token  # acknowledged, not applied again
        else:
            assert response.status == 409

    @invariant()
    def no_write_lost_or_doubled(self) -> None:
        assert len(self.applied) == len(set(self.applied)), "a write was applied twice"
        assert sorted(self.applied) == sorted(self.acked), "an acknowledged write is missing"
        if self.generation is not None:
            stored = self.servers[1].store.get(self.path.rsplit("/", 1)[1])
            assert stored is not None
            assert stored.data.decode() == self.model_data
            assert stored.token == self.model_token
            assert stored.revision == len(self.applied)


SharedStoreMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)
TestSharedStore = SharedStoreMachine.TestCase
