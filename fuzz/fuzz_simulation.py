"""Fuzz target for the whole sign-in: random scenarios and schedules through the simulator.

The input bytes choose a scenario (generation, which device shows the QR code, attacker or not, the fault budget
and the user's guess) and then one scheduler choice per byte. Contract checked on every input:

* nothing raises: every network-borne oddity ends in a typed outcome;
* the run finishes within the step bound, and :func:`qrlogin.sim.invariants.check` finds no violation (both of the
  user's devices end in success or a typed failure; secrets only reach the confirmed new device; the attacker
  obtains neither secrets nor a token for the user's account; no nonce is reused; an honest run succeeds before the
  rendezvous expires; a device that gives up with an ``m.login.failure`` does not leave the other waiting for the
  rendezvous to expire).

Run with atheris (``python fuzz/fuzz_simulation.py fuzz/corpus/simulation``; ``scripts/fuzz`` runs every target for a
bounded budget); ``tests/sim/test_fuzz_simulation.py`` runs the same :func:`fuzz_one` under hypothesis.
"""

from __future__ import annotations

from qrlogin import qr
from qrlogin.sim import Faults, Scenario, run
from qrlogin.sim.invariants import check
from qrlogin.vocabulary import DeviceRole

_GENERATIONS = tuple(qr.Generation)


def scenario_from(header: bytes) -> Scenario:
    """Six header bytes (zero-padded) to a scenario."""
    h = header.ljust(6, b"\x00")
    attacker = bool(h[1] & 1)
    faults = Faults(
        drops=h[2] % 3,
        duplicates=(h[2] // 3) % 3,
        delays=h[3] % 4,
        cancels=(h[3] // 4) % 2,
        denials=(h[3] // 8) % 2,
        overwrites=(h[3] // 16) % 2 if attacker else 0,
    )
    if h[1] & 2:
        faults = Faults()
    guess = f"{h[4] % 9 + 1}{h[5] % 10}"
    return Scenario(
        generation=_GENERATIONS[h[0] % 3],
        qr_on=DeviceRole.NEW if h[1] & 4 else DeviceRole.EXISTING,
        attacker=attacker,
        faults=faults,
        user_guess=guess,
        seed=b"fuzz" + h[:1],
    )


def fuzz_one(data: bytes) -> None:
    scenario = scenario_from(data[:6])
    result = run(scenario, list(data[6:]))
    verdict = check(result)
    assert verdict.ok, (scenario, verdict.violations)


one_input = fuzz_one  # the atheris entry point


if __name__ == "__main__":  # pragma: no cover - needs atheris
    from atheris_driver import hand_over

    hand_over(__file__)
