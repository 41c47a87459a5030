"""Every state diagram in docs/ is what its machine's transitions table draws today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_doc_diagrams_are_generated_from_the_tables() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "diagrams.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
