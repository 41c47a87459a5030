"""A deterministic simulator of a complete sign-in with QR code.

* :mod:`.world`: the devices (:mod:`qrlogin.device`), the homeserver model with the rendezvous server behind its
  hook, the user, the attacker, the virtual clock and the network, as one immutable value with ``actions`` and
  ``step``;
* :mod:`.run`: a scheduler driven by a list of choices (what hypothesis generates);
* :mod:`.invariants`: what every finished run must satisfy;
* :mod:`.explore`: a bounded exhaustive exploration of interleavings with state deduplication.

See ``docs/simulation.md``.
"""

from __future__ import annotations

from .run import Run, run
from .world import Faults, Scenario, World, honest_scenario

__all__ = ["Faults", "Run", "Scenario", "World", "honest_scenario", "run"]
