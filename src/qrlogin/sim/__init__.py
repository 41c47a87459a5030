"""A deterministic simulator of a complete sign-in with QR code.

* :mod:`.world`: the devices (:mod:`qrlogin.device`), the homeserver model with the rendezvous server behind its
  hook, the user, the attacker, the virtual clock and the network, as one immutable value with ``actions`` and
  ``step``;
* :mod:`.run`: a scheduler driven by a list of choices (what hypothesis generates);
* :mod:`.invariants`: what every finished run must satisfy;
* :mod:`.explore`: an exhaustive exploration of interleavings within a fault budget, with state deduplication by
  :mod:`.fingerprint`, spread over processes by :mod:`.parallel`;
* :mod:`.counterexample`: a violation's schedule as a file that ``qrlogin demo --replay`` plays back;
* :mod:`.matrix`: the configurations CI explores and the table of counts the docs keep.

See ``docs/simulation.md``.
"""

from __future__ import annotations

from .run import Run, run
from .world import Faults, Scenario, World, honest_scenario

__all__ = ["Faults", "Run", "Scenario", "World", "honest_scenario", "run"]
