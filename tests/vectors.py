"""Access to the language-neutral JSON files in ``spec_vectors/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPEC_VECTORS = Path(__file__).resolve().parent.parent / "spec_vectors"


def load(name: str) -> Any:
    with (SPEC_VECTORS / name).open(encoding="utf-8") as file:
        return json.load(file)


def wycheproof_tests(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every (group, test) pair of a Wycheproof file."""
    data = load(name)
    return [(group, test) for group in data["testGroups"] for test in group["tests"]]
