"""Running scenarios and fuzz runs against one client, and the report they make.

Theory of operation
-------------------
:func:`run_suite` plays every selected scenario for every selected target (role, side, generation): each variant
of a scenario is one :func:`~qrlogin.check_client.run.play`, judged by the scenario, and the scenario's result is
the worst of its variants (:func:`~qrlogin.check_client.scenarios.worst`). :func:`run_fuzz` plays N runs that each
draw one mutation from a seeded generator: a payload of the counterpart changed at the byte level (a bit flipped,
cut, extended, replaced by random base64, replaced by an earlier payload) or one HTTP answer to the client replaced
(an error status with a JSON, garbage or empty body, sometimes after the request reached the model). A fuzz run is a
finding when the client crashed (exited without ``done``), hung (no ``done`` by the deadline), or reported success
although a payload it read had been tampered with; recovering from an HTTP fault is what a client should do.

:class:`Report` holds the results and writes them as text lines or as JSON; :attr:`Report.must_failed` decides the
exit status.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..encoding import b64encode
from ..http import HttpRequest, HttpResponse
from . import faults
from .counterpart import PendingWrite, WriteHook
from .homeserver import Forward, Intercept
from .run import ClientRun, Plan, Target, play
from .scenarios import SCENARIOS, ClientScenario, Grade, Judgement, Level, worst

__all__ = ["FuzzFinding", "Report", "ScenarioResult", "run_fuzz", "run_suite", "scenario_names"]


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    scenario: str
    target: str
    rule: str
    level: str
    grade: str
    evidence: str
    seconds: float  # the time its runs took, added up


@dataclass(frozen=True, slots=True)
class FuzzFinding:
    run: int
    target: str
    mutation: str
    finding: str


@dataclass
class Report:
    shim: str
    results: list[ScenarioResult] = field(default_factory=list)
    fuzz_runs: int = 0
    fuzz_seed: int | None = None
    findings: list[FuzzFinding] = field(default_factory=list)

    @property
    def must_failed(self) -> list[ScenarioResult]:
        return [r for r in self.results if r.level == Level.MUST and r.grade == Grade.FAIL]

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.grade] = counts.get(result.grade, 0) + 1
        return {
            "shim": self.shim,
            "summary": counts | {"must_failed": len(self.must_failed), "fuzz_findings": len(self.findings)},
            "scenarios": [asdict(r) for r in self.results],
            "fuzz": {"runs": self.fuzz_runs, "seed": self.fuzz_seed, "findings": [asdict(f) for f in self.findings]},
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")


def scenario_names() -> list[str]:
    return [scenario.name for scenario in SCENARIOS]


def _select(names: Sequence[str] | None) -> list[ClientScenario]:
    if not names:
        return list(SCENARIOS)
    by_name = {scenario.name: scenario for scenario in SCENARIOS}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise KeyError(", ".join(unknown))
    return [by_name[name] for name in names]


def run_suite(
    template: str,
    targets: Iterable[Target],
    *,
    names: Sequence[str] | None = None,
    jobs: int = 1,
    on_result: Callable[[ScenarioResult], None] | None = None,
) -> Report:
    """Every selected scenario against every target; ``on_result`` is told each result, in order, as it comes.

    ``jobs`` runs play at the same time (each has its own server, port and client process); results keep their
    order whatever finishes first.
    """
    report = Report(shim=template)
    scenarios = _select(names)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        pending: list[tuple[Target, ClientScenario, list[tuple[str, Future[tuple[Judgement, float]]]] | str]] = []
        for target in targets:
            for scenario in scenarios:
                variants = scenario.variants(target)
                if isinstance(variants, str):
                    pending.append((target, scenario, variants))
                    continue
                futures = [
                    (label, pool.submit(_play_variant, template, target, scenario, label, plan))
                    for label, plan in variants
                ]
                pending.append((target, scenario, futures))
        for target, scenario, work in pending:
            seconds = 0.0
            if isinstance(work, str):
                verdict = Judgement(Grade.SKIP, work)
            else:
                done = [(label, future.result()) for label, future in work]
                verdict = worst([(label, result[0]) for label, result in done])
                seconds = sum(result[1] for _, result in done)
            result = ScenarioResult(
                scenario=scenario.name,
                target=str(target),
                rule=scenario.rule,
                level=scenario.level.value,
                grade=verdict.grade.value,
                evidence=verdict.evidence,
                seconds=round(seconds, 1),
            )
            report.results.append(result)
            if on_result is not None:
                on_result(result)
    return report


def _play_variant(
    template: str, target: Target, scenario: ClientScenario, label: str, plan: Plan
) -> tuple[Judgement, float]:
    """One run, judged; with how long it took (seconds)."""
    started = time.monotonic()
    run = play(template, target, plan, name=f"{scenario.name} {label}")
    verdict = scenario.judge(run)
    if verdict.grade is Grade.FAIL and run.log_tail and (run.crashed or run.hung):
        last = run.log_tail.strip().splitlines()[-1:] or [""]
        verdict = Judgement(verdict.grade, f"{verdict.evidence}; last log line: {last[0][:120]}")
    return verdict, time.monotonic() - started


# ------------------------------------------------------------------------------------------------------- fuzz


def _mutate_payload(rng: random.Random, payload: str, earlier: Sequence[str]) -> tuple[str, str]:
    choice = rng.randrange(5)
    if choice == 0:
        return faults.flip(payload), "bit flipped"
    if choice == 1:
        cut = rng.randrange(len(payload)) if payload else 0
        return payload[:cut], f"cut at {cut}"
    if choice == 2:
        return payload + b64encode(rng.randbytes(rng.randrange(1, 64))), "extended"
    if choice == 3:
        return b64encode(rng.randbytes(rng.randrange(0, 300))), "random base64"
    if earlier:
        return rng.choice(earlier), "an earlier payload"
    return payload[::-1], "reversed"


_STATUSES = (400, 401, 403, 404, 409, 412, 413, 429, 500, 502, 503)
# Past the session's lifetime (the default plan's 25 s) with room to notice the expiry: a client that ends only when
# its session expires has not hung.
_FUZZ_DEADLINE_S = 40.0


def _mutated_answer(rng: random.Random, request: HttpRequest) -> HttpResponse:
    status = rng.choice(_STATUSES)
    body_kind = rng.randrange(3)
    if body_kind == 0:
        return faults.matrix_error(status, "M_UNKNOWN", "check-client fuzz")
    if body_kind == 1:
        return HttpResponse(status=status, headers=(("content-type", "application/json"),), body=rng.randbytes(40))
    return HttpResponse(status=status, headers=(), body=b"")


def _fuzz_plan(rng: random.Random) -> tuple[str, Plan]:
    if rng.random() < 0.6:
        index = rng.randrange(4)
        state: dict[str, str] = {}

        def write_hook(run: ClientRun) -> WriteHook:
            def hook(write: PendingWrite) -> str | None:
                if write.index != index:
                    return None
                mutated, how = _mutate_payload(rng, write.payload, [w.payload for w in run.counterpart.writes])
                state["how"] = how
                return mutated

            return hook

        return f"payload {index}", Plan(write_hook=write_hook, deadline_s=_FUZZ_DEADLINE_S)
    nth = rng.randrange(1, 16)
    lands = rng.random() < 0.3

    def intercept(run: ClientRun) -> Intercept:
        seen = 0

        def answer(request: HttpRequest, forward: Forward) -> HttpResponse:
            nonlocal seen
            seen += 1
            if seen != nth:
                return forward(request)
            if lands:
                forward(request)
            return _mutated_answer(rng, request)

        return answer

    label = f"HTTP answer {nth}" + (" (after it landed)" if lands else "")
    return label, Plan(intercept=intercept, deadline_s=_FUZZ_DEADLINE_S)


def run_fuzz(
    template: str,
    targets: Sequence[Target],
    *,
    runs: int,
    seed: int,
    report: Report,
    jobs: int = 1,
    on_finding: Callable[[FuzzFinding], None] | None = None,
) -> None:
    """``runs`` mutated runs, drawn from ``seed`` (run ``i`` from ``f"{seed}:{i}"``); findings go into ``report``."""
    report.fuzz_runs, report.fuzz_seed = runs, seed
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_fuzz_once, template, targets[n % len(targets)], seed, n) for n in range(runs)]
        for future in futures:
            found = future.result()
            if found is not None:
                report.findings.append(found)
                if on_finding is not None:
                    on_finding(found)


def _fuzz_once(template: str, target: Target, seed: int, number: int) -> FuzzFinding | None:
    rng = random.Random(f"{seed}:{number}")  # noqa: S311  (reproducible mutations, not secrets)
    mutation, plan = _fuzz_plan(rng)
    run = play(template, target, plan, name=f"fuzz {seed} {number}")
    if run.crashed:
        finding = f"crash: {run.summary()}"
    elif run.hung:
        finding = f"hang: {run.summary()}"
    elif run.succeeded and run.counterpart.tampered:
        finding = "success after tampering"
    else:
        return None
    return FuzzFinding(run=number, target=str(target), mutation=mutation, finding=finding)
