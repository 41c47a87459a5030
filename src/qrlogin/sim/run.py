"""Drive a :class:`~qrlogin.sim.world.World` with a scheduler made of choices.

A schedule is a sequence of integers. At step ``i`` the world lists its enabled actions and the scheduler takes
``actions[choices[i] % len(actions)]``; past the end of the list it takes the first action, which is the fair and
prompt one (deliver the oldest pending item, let the user act, then let time pass). Hypothesis generates schedules
as lists of integers and shrinks them; :mod:`qrlogin.sim.explore` enumerates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .world import Action, Scenario, World, actions, is_finished, new_world, step

__all__ = ["MAX_STEPS", "Run", "run"]

MAX_STEPS = 5_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    world: World
    trace: tuple[Action, ...]
    finished: bool


def run(scenario: Scenario, choices: Sequence[int] = (), *, max_steps: int = MAX_STEPS) -> Run:
    """Run ``scenario`` under ``choices`` until the world is finished or ``max_steps`` actions were taken."""
    world = new_world(scenario)
    trace: list[Action] = []
    for index in range(max_steps):
        options = actions(world)
        if not options:
            break
        choice = choices[index] % len(options) if index < len(choices) else 0
        action = options[choice]
        world = step(world, action)
        trace.append(action)
    return Run(world=world, trace=tuple(trace), finished=is_finished(world))
