"""``qrlogin check-client``: an adversarial counterpart that grades a client's sign-in with QR code.

The suite plays the other device (:mod:`.counterpart`, qrlogin's own device machine with hooks on what it writes)
and the homeserver (:mod:`.homeserver`, the pure model on loopback behind a fault layer), and runs the client under
test through a shim (:mod:`.shim`, the JSON-lines events and acts of ``qrlogin login/link --events json``). Each run
(:mod:`.run`) is judged by its scenario (:mod:`.scenarios`); :mod:`.suite` runs many and reports. docs/conformance.md
is the user's guide.
"""

from __future__ import annotations

from .run import ClientRun, Plan, Target, play
from .scenarios import SCENARIOS, ClientScenario, Grade, Judgement, Level
from .suite import FuzzFinding, Report, ScenarioResult, run_fuzz, run_suite

__all__ = [
    "SCENARIOS",
    "ClientRun",
    "ClientScenario",
    "FuzzFinding",
    "Grade",
    "Judgement",
    "Level",
    "Plan",
    "Report",
    "ScenarioResult",
    "Target",
    "play",
    "run_fuzz",
    "run_suite",
]
