"""Keep README.md true: its Python example runs, and the qrlogin invocations of its set-up command succeed."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from qrlogin.cli import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_python_examples_run() -> None:
    blocks = _blocks("python")
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})  # noqa: S102 - executing our own documentation


def test_setup_commands_are_exactly_two() -> None:
    assert len(_blocks("sh")) == 2
    assert _blocks("sh")[1].strip() == "bash scripts/test"


def test_main_job_commands_succeed(capsys: pytest.CaptureFixture[str]) -> None:
    setup = _blocks("sh")[0]
    invocations = [part.strip() for part in setup.split("&&") if ".venv/bin/qrlogin" in part]
    assert invocations
    for invocation in invocations:
        argv = shlex.split(invocation)[1:]
        assert main(argv) == 0, invocation
    assert "generation" in capsys.readouterr().out
