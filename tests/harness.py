"""One harness for running machines against each other in a test, in the spirit of quinn-proto's test ``Pair``.

Each :class:`Party` is a pure machine (its ``transition`` and current ``state``), an optional ``deadline`` query and
a ``done`` predicate, plus the record of every step it took. A :class:`Harness` holds the parties (usually two: two
devices, or two machines of one layer; a device over a channel is two parties of its own), one queue of
:class:`Delivery` values, and a virtual clock. The test supplies ``route(sender, effect)``: what each effect turns
into, as deliveries to a party (the peer, itself after a server double answered, the user's script). Nothing is
hidden: every event a party is fed and every effect it returns is in :attr:`Party.steps`, in order, with the time.

Deliveries have three urgencies, because the pumps this replaced needed all three: ``"later"`` joins the back of
the queue (a message on the wire), ``"next"`` jumps to its front (a server double's answer, taken before anything
else moves), ``"now"`` is fed at once, inside the routing of the effect that caused it (two layers of one device).

:meth:`Harness.run` feeds the queue until it is empty, then asks ``idle()`` (the user's script, a scheduled
deletion...) and, if that adds nothing, jumps the clock to the earliest deadline of a party still running and fires
:class:`TimerFired` into every party that is due. It stops when nothing can happen any more.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from qrlogin.vocabulary import TimerFired

T = TypeVar("T")

Urgency = Literal["later", "next", "now"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Feed ``event`` to the party named ``to``, with the given urgency (see the module docstring)."""

    to: str
    event: object
    urgency: Urgency = "later"


@dataclass(frozen=True, slots=True)
class Step:
    """One transition a party took: when, what it was fed, what it returned."""

    at_ms: int
    event: object
    effects: tuple[Any, ...]


def _never_done(state: object) -> bool:
    return False


@dataclass(eq=False)
class Party:
    """One machine under test and its record. ``done(state)`` parties are fed nothing more (events are dropped)."""

    name: str
    state: Any
    transition: Callable[..., tuple[Any, tuple[Any, ...]]]
    deadline: Callable[[Any], int | None] | None = None
    done: Callable[[Any], bool] = _never_done
    steps: list[Step] = field(default_factory=list)

    @property
    def effects(self) -> list[Any]:
        """Every effect this party returned, in order."""
        return [effect for step in self.steps for effect in step.effects]

    def of_type(self, kind: type[T]) -> list[T]:
        return [effect for effect in self.effects if isinstance(effect, kind)]

    @property
    def finished(self) -> bool:
        return self.done(self.state)


Route = Callable[[str, Any], Iterable[Delivery]]
"""``route(sender, effect)``: the deliveries an effect turns into (none for an effect only the test looks at)."""


def to_nobody(sender: str, effect: object) -> Iterable[Delivery]:
    """A route for tests that feed every event by hand and only want the record and the clock."""
    return ()


class Harness:
    """Named parties, one delivery queue, a virtual clock; see the module docstring."""

    def __init__(self, parties: Iterable[Party], route: Route = to_nobody, *, now_ms: int = 0) -> None:
        self.parties: dict[str, Party] = {party.name: party for party in parties}
        self.route = route
        self.now_ms = now_ms
        self.queue: deque[Delivery] = deque()

    def __getitem__(self, name: str) -> Party:
        return self.parties[name]

    # ------------------------------------------------------------------------------------------- moving parties

    def start(self, name: str, result: tuple[Any, tuple[Any, ...]], event: object = None) -> tuple[Any, ...]:
        """Record a party's start (``start(...) -> (state, effects)``) as its first step and route the effects."""
        party = self.parties[name]
        party.state, effects = result
        return self._record(party, event, effects)

    def feed(self, name: str, event: object) -> tuple[Any, ...]:
        """Feed one event to a party now and route its effects; a party that is done takes nothing."""
        party = self.parties[name]
        if party.done(party.state):
            return ()
        party.state, effects = party.transition(party.state, event, now_ms=self.now_ms)
        return self._record(party, event, effects)

    def _record(self, party: Party, event: object, effects: tuple[Any, ...]) -> tuple[Any, ...]:
        party.steps.append(Step(self.now_ms, event, tuple(effects)))
        for effect in effects:
            for delivery in self.route(party.name, effect):
                self.deliver(delivery)
        return tuple(effects)

    def deliver(self, delivery: Delivery) -> None:
        if delivery.urgency == "now":
            self.feed(delivery.to, delivery.event)
        elif delivery.urgency == "next":
            self.queue.appendleft(delivery)
        else:
            self.queue.append(delivery)

    def step(self, take: Callable[[Delivery], Delivery] | None = None) -> Delivery | None:
        """Feed the first queued delivery; ``None`` when the queue is empty.

        ``take(delivery)``, if given, sees the delivery first and returns the one to feed instead (a test that
        injects an event puts the original back with ``harness.queue.appendleft`` and returns its own)."""
        if not self.queue:
            return None
        delivery = self.queue.popleft()
        if take is not None:
            delivery = take(delivery)
        self.feed(delivery.to, delivery.event)
        return delivery

    # ---------------------------------------------------------------------------------------------------- time

    def live(self) -> list[Party]:
        return [party for party in self.parties.values() if not party.done(party.state)]

    def next_deadline(self, *also: int) -> int | None:
        """The earliest deadline of a live party, or of ``also`` (times the test keeps itself); ``None`` if none."""
        times = [d for p in self.live() if p.deadline is not None and (d := p.deadline(p.state)) is not None]
        times += also
        return min(times) if times else None

    def advance_to(self, when_ms: int) -> None:
        """Move the clock on to ``when_ms`` (never back)."""
        self.now_ms = max(self.now_ms, when_ms)

    def fire_due_timers(self) -> list[str]:
        """Queue :class:`TimerFired` for every live party whose deadline has come; the names of those parties."""
        due = [
            party.name
            for party in self.live()
            if party.deadline is not None and (d := party.deadline(party.state)) is not None and d <= self.now_ms
        ]
        for name in due:
            self.deliver(Delivery(name, TimerFired()))
        return due

    # ------------------------------------------------------------------------------------------------- running

    def run(
        self,
        *,
        idle: Callable[[], bool] | None = None,
        take: Callable[[Delivery], Delivery] | None = None,
        max_steps: int = 10_000,
    ) -> None:
        """Feed the queue (through ``take``, see :meth:`step`); when it is empty ask ``idle()`` (true if it queued
        something or moved the clock), else jump to the next deadline and fire the due timers. Returns when nothing
        can happen; raises if ``max_steps`` pass first."""
        for _ in range(max_steps):
            if self.step(take) is not None:
                continue
            if idle is not None and idle():
                continue
            when = self.next_deadline()
            if when is None:
                return
            self.advance_to(when)
            self.fire_due_timers()
        raise AssertionError(f"the harness did not settle in {max_steps} steps")


def transcript(parties: Mapping[str, Party]) -> dict[str, list[Any]]:
    """Every effect of every party, by name: what a test compares when it wants the whole run."""
    return {name: party.effects for name, party in parties.items()}


__all__ = ["Delivery", "Harness", "Party", "Route", "Step", "to_nobody", "transcript"]
