"""Run every fuzz target under atheris for a bounded number of executions; ``scripts/fuzz`` calls this.

Each target (``fuzz/fuzz_TARGET.py``) runs in its own process through ``atheris_driver.py``, seeded with
``fuzz/corpus/TARGET/``, for ``BUDGETS[TARGET]`` executions (libFuzzer's ``-runs``), at most ``--jobs`` at a time,
the slowest first. New inputs that libFuzzer keeps go to a scratch directory, so the committed corpus only changes by
hand. A target that raises, fails its contract, hangs past ``-timeout`` or runs out of memory fails the whole run:
the tail of its log is printed with the crashing input, which libFuzzer writes to ``fuzz/crash-TARGET/`` (ignored
by git). Add that file to ``fuzz/corpus/TARGET/`` as a regression input and fix the bug.

Without atheris (it ships wheels for CPython on Linux and macOS only) the hypothesis runners of the same targets run
instead, and the script says so.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
sys.path.insert(0, str(FUZZ_DIR))
from atheris_driver import CORPUS_DIR, targets  # noqa: E402 - needs the path above

#: Executions per target, in the order they start: the longest run first, so that two workers finish together. Every
#: budget is at least 10,000; the login and rendezvous client targets get more: run against the code before their
#: fixes, they found the unparseable URL and the Retry-After crash after 3,000 to 50,000 executions.
#: The executions per second each target reached, and the time the whole run took, are in README.md (Testing).
BUDGETS = {
    "simulation": 10_000,
    "login": 30_000,
    "rendezvous_client": 200_000,
    "channel_hpke": 10_000,
    "channel_ecies": 30_000,
    "rendezvous_server": 20_000,
    "homeserver": 40_000,
    "qr_decode": 100_000,
    "discovery": 10_000,
}
MIN_RUNS = 10_000
#: The hypothesis runners of the targets, run when atheris is missing.
HYPOTHESIS_RUNNERS = (
    "tests/test_fuzz_corpus.py",
    "tests/channel/test_fuzz_ecies.py",
    "tests/channel/test_fuzz_hpke.py",
    "tests/test_fuzz_qr.py",
    "tests/sim/test_fuzz_simulation.py",
    "tests/homeserver/test_fuzz.py",
    "tests/login/test_fuzz.py",
    "tests/rendezvous/test_fuzz.py",
)

_EXECUTED = re.compile(r"^stat::number_of_executed_units: (\d+)$", re.MULTILINE)
_COVERAGE = re.compile(r"\bcov: (\d+) ft: (\d+) corp: (\d+)/")


@dataclass(frozen=True)
class Outcome:
    target: str
    returncode: int
    runs: int | None
    seconds: float
    coverage: tuple[int, int, int] | None
    log: Path


def _fuzz(target: str, runs: int, scratch: Path, timeout_s: int) -> Outcome:
    work = scratch / target
    work.mkdir()
    artifacts = FUZZ_DIR / f"crash-{target}"
    artifacts.mkdir(exist_ok=True)
    log = scratch / f"{target}.log"
    command = [
        sys.executable,
        str(FUZZ_DIR / "atheris_driver.py"),
        target,
        str(work),
        str(CORPUS_DIR / target),
        f"-runs={runs}",
        f"-timeout={timeout_s}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    started = time.monotonic()
    with log.open("wb") as out:
        returncode = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False, cwd=ROOT).returncode
    seconds = time.monotonic() - started
    if not any(artifacts.iterdir()):
        artifacts.rmdir()
    text = log.read_text(errors="replace")
    executed = _EXECUTED.search(text)
    coverage = _COVERAGE.findall(text)
    return Outcome(
        target=target,
        returncode=returncode,
        runs=int(executed[1]) if executed else None,
        seconds=seconds,
        coverage=(int(coverage[-1][0]), int(coverage[-1][1]), int(coverage[-1][2])) if coverage else None,
        log=log,
    )


def _report(outcome: Outcome) -> str:
    runs = "?" if outcome.runs is None else f"{outcome.runs:,}"
    rate = "" if not outcome.runs else f"{outcome.runs / max(outcome.seconds, 1e-9):>8,.0f}/s"
    cov = "" if outcome.coverage is None else "cov {} ft {} corpus {}".format(*outcome.coverage)
    status = "ok" if outcome.returncode == 0 else f"FAILED (exit {outcome.returncode})"
    return f"{outcome.target:<18} {runs:>9} runs {outcome.seconds:7.1f} s {rate}  {cov}  {status}"


def _without_atheris() -> int:
    print("== fuzz: atheris is not installed here; running the targets' hypothesis runners instead", flush=True)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *HYPOTHESIS_RUNNERS]
    return subprocess.run(command, check=False, cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="targets to run (default: all)")
    parser.add_argument("--runs", type=int, help="executions per target instead of the budgets above")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="targets at a time")
    parser.add_argument("--timeout", type=int, default=60, help="seconds one input may take before it is a hang")
    args = parser.parse_args(argv)
    names = args.targets or targets()
    unknown = sorted(set(names) - set(targets()))
    if unknown:
        parser.error(f"unknown targets {unknown}; targets: {', '.join(targets())}")
    missing = sorted(set(targets()) - set(BUDGETS))
    if missing:
        parser.error(f"no budget for {missing}: add them to BUDGETS")
    low = sorted(name for name, runs in BUDGETS.items() if runs < MIN_RUNS)
    if low:
        parser.error(f"the budgets of {low} are below {MIN_RUNS:,} executions")
    try:
        import atheris  # noqa: F401
    except ImportError:
        return _without_atheris()
    order = [name for name in BUDGETS if name in names]
    budgets = {name: args.runs or BUDGETS[name] for name in order}
    print(f"== fuzz: {len(order)} targets under atheris, {args.jobs} at a time", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qrlogin-fuzz-") as scratch, ThreadPoolExecutor(args.jobs) as pool:
        jobs = [pool.submit(_fuzz, name, budgets[name], Path(scratch), args.timeout) for name in order]
        outcomes = []
        for job in jobs:
            outcome = job.result()
            outcomes.append(outcome)
            print(_report(outcome), flush=True)
        failed = [o for o in outcomes if o.returncode != 0 or o.runs is None or o.runs < budgets[o.target]]
        for outcome in failed:
            print(f"\n== fuzz: {outcome.target} failed; the end of its log:", flush=True)
            print("\n".join(outcome.log.read_text(errors="replace").splitlines()[-60:]), flush=True)
            print(f"== the crashing input is in fuzz/crash-{outcome.target}/: copy it to fuzz/corpus/{outcome.target}/")
    total = sum(o.runs or 0 for o in outcomes)
    print(f"== fuzz: {total:,} executions in {time.monotonic() - started:.1f} s wall clock", flush=True)
    print(f"fuzz: {len(outcomes) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
