"""Every fuzz target's corpus (``fuzz/corpus/TARGET/``) replayed through the target's atheris entry point.

The corpus holds each target's seeds and, once a fuzzer has found a bug, the input that found it: replaying them here
keeps every fixed crash fixed whether or not atheris is installed (``scripts/fuzz`` also seeds atheris with them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channel.channel_helpers import load_fuzz_target

DRIVER = load_fuzz_target("atheris_driver")
CAMPAIGN = load_fuzz_target("campaign")
TARGETS: list[str] = DRIVER.targets()
CORPUS: Path = DRIVER.CORPUS_DIR


def test_every_target_has_a_corpus_and_every_corpus_a_target() -> None:
    assert sorted(path.name for path in CORPUS.iterdir() if path.is_dir()) == TARGETS
    for target in TARGETS:
        assert any((CORPUS / target).iterdir()), target


@pytest.mark.parametrize("target", TARGETS)
def test_the_corpus_replays_clean(target: str) -> None:
    one_input = DRIVER.load(target).one_input
    for path in sorted((CORPUS / target).iterdir()):
        one_input(path.read_bytes())


def test_every_target_has_a_budget_of_at_least_ten_thousand_executions() -> None:
    assert sorted(CAMPAIGN.BUDGETS) == TARGETS
    assert min(CAMPAIGN.BUDGETS.values()) >= CAMPAIGN.MIN_RUNS == 10_000
