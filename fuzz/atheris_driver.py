"""Run one fuzz target under atheris, with qrlogin instrumented for coverage feedback.

    python fuzz/atheris_driver.py TARGET [corpus directories and libFuzzer flags]

``TARGET`` names ``fuzz/fuzz_TARGET.py`` (``qr_decode``, ``login``, ...); its ``one_input(data: bytes)`` is the
entry point, and ``fuzz/corpus/TARGET/`` holds its seeds and the regression inputs of bugs it found. The target is
imported inside :func:`atheris.instrument_imports`, so every ``qrlogin`` module it pulls in reports branch coverage
to libFuzzer (without it atheris mutates blindly). ``scripts/fuzz`` runs every target this way for a bounded budget.

A target may leave parts of qrlogin uninstrumented (:data:`UNINSTRUMENTED`). The strict JSON reader's nesting scan
runs once per character, and instrumented it took four fifths of the login target's time (the fuzzer, rewarded by
its branches, grew inputs full of brackets); the homeserver and rendezvous targets still fuzz it instrumented. The
simulation drives whole sign-ins through the homeserver model and the simulator, whose own targets and tests cover
them; instrumenting them would halve its executions per second.

Each target file also runs on its own (``python fuzz/fuzz_login.py ...``): it hands over to this driver in a fresh
interpreter, because a module imported before the instrumentation hook is in place stays uninstrumented.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

FUZZ_DIR = Path(__file__).resolve().parent
CORPUS_DIR = FUZZ_DIR / "corpus"

#: Per target, the qrlogin modules and packages that stay uninstrumented.
UNINSTRUMENTED: dict[str, tuple[str, ...]] = {
    "login": ("qrlogin._json",),
    "simulation": ("qrlogin._json", "qrlogin.homeserver", "qrlogin.sim"),
}


def targets() -> list[str]:
    """Every target name, from the ``fuzz/fuzz_*.py`` files."""
    return sorted(path.stem.removeprefix("fuzz_") for path in FUZZ_DIR.glob("fuzz_*.py"))


def load(target: str) -> ModuleType:
    """Import ``fuzz/fuzz_TARGET.py`` as module ``fuzz_TARGET``."""
    name = f"fuzz_{target}"
    spec = importlib.util.spec_from_file_location(name, FUZZ_DIR / f"{name}.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no fuzz target {target!r}; targets: {', '.join(targets())}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def qrlogin_modules() -> list[str]:
    """Every module name of the qrlogin package, found without importing any of them."""
    spec = importlib.util.find_spec("qrlogin")
    assert spec is not None and spec.submodule_search_locations is not None
    root = Path(next(iter(spec.submodule_search_locations)))
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names.append(".".join(("qrlogin", *parts[: -1 if parts[-1] == "__init__" else None])))
    return names


def excluded(target: str) -> list[str]:
    """The exact module names :func:`atheris.instrument_imports` must skip for ``target``."""
    prefixes = UNINSTRUMENTED.get(target, ())
    return [name for name in qrlogin_modules() if any(name == p or name.startswith(p + ".") for p in prefixes)]


def hand_over(target_file: str) -> None:  # pragma: no cover - replaces the process
    """Re-run ``python fuzz/fuzz_X.py ARGS`` as ``python fuzz/atheris_driver.py X ARGS``."""
    target = Path(target_file).stem.removeprefix("fuzz_")
    os.execv(sys.executable, [sys.executable, __file__, target, *sys.argv[1:]])  # noqa: S606 - the same interpreter


def main(argv: list[str]) -> None:  # pragma: no cover - needs atheris
    if len(argv) < 2 or argv[1].startswith("-"):
        raise SystemExit(f"usage: {argv[0]} TARGET [corpus dirs] [libFuzzer flags]; targets: {', '.join(targets())}")
    import atheris

    sys.path.insert(0, str(FUZZ_DIR))
    with atheris.instrument_imports(include=["qrlogin"], exclude=excluded(argv[1])):
        module = load(argv[1])
    atheris.Setup([argv[0], *argv[2:]], module.one_input)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv)
