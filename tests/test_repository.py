"""The repository stands alone: checks over the tree itself rather than over the code's behaviour.

* Nothing points outside the repository: no path into a sibling checkout, and no citation of a document that only
  exists there. Provenance names the upstream repository, commit and file; the protocol digest is docs/protocol.md.
* The examples in README.md and docs/ use the public API only: no import of a module or name that starts with ``_``.
* Code and docs speak about the protocol and the code, not about how the work was tracked.
* The package ships its license, and its version is defined once, in ``qrlogin.__version__``.
* The sdist carries what the tests, fuzz targets and benchmarks read.

The file-content checks skip this file, which has to spell out what they look for.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import qrlogin

ROOT = Path(__file__).resolve().parent.parent
THIS_FILE = Path(__file__).resolve()

# What a reader of the repository or of its sdist gets. Missing entries are skipped (an sdist has no .ci/).
SCANNED = (
    "src",
    "tests",
    "docs",
    "scripts",
    "fuzz",
    "benchmarks",
    ".ci",
    "spec_vectors",
    "README.md",
    "pyproject.toml",
    "MANIFEST.in",
)
# Written by the project (the vectors in spec_vectors/ are third-party data apart from their provenance).
PROSE = ("src", "tests", "docs", "scripts", "fuzz", "benchmarks", ".ci", "README.md", "spec_vectors/README.md")
SKIPPED_DIRECTORIES = frozenset(
    {"__pycache__", "node_modules", ".hypothesis", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
)

# A path into a sibling checkout, or a citation of one of the notes that used to live there.
OUTSIDE_REFERENCE = re.compile(r"\.\./shared\b|\bshared/(?:spec|vectors)\b|(?<![\w/.-])(?:PROTOCOL|THREATS|PEERS)\.md")
WORK_TRACKING = re.compile(r"\bissues? #?[0-9]+", re.IGNORECASE)


def _files(entries: tuple[str, ...]) -> Iterator[Path]:
    for entry in entries:
        path = ROOT / entry
        if path.is_file():
            candidates: Iterator[Path] = iter([path])
        elif path.is_dir():
            candidates = (p for p in sorted(path.rglob("*")) if p.is_file())
        else:
            continue
        for candidate in candidates:
            parts = candidate.relative_to(ROOT).parts
            if SKIPPED_DIRECTORIES.intersection(parts) or any(part.endswith(".egg-info") for part in parts):
                continue  # caches and build output (an editable install writes src/qrlogin.egg-info)
            if candidate.resolve() == THIS_FILE:
                continue
            yield candidate


def _hits(pattern: re.Pattern[str], path: Path) -> list[str]:
    """``"line N: match"`` for every match in the file (binary files such as fuzz seeds are read leniently)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    return [f"line {text.count(chr(10), 0, m.start()) + 1}: {m.group()}" for m in pattern.finditer(text)]


def test_nothing_refers_outside_the_repository() -> None:
    found = {str(path.relative_to(ROOT)): hits for path in _files(SCANNED) if (hits := _hits(OUTSIDE_REFERENCE, path))}
    assert found == {}, "cite the upstream source or a file in this repository instead"


def test_the_outside_reference_scan_finds_what_it_looks_for() -> None:
    dots, shared = "..", "shared"
    for text in (f"{dots}/{shared}/x.json", f"see {shared}/spec/a.md", f"`{shared}/vectors/b.json`", "(PEERS" + ".md)"):
        assert OUTSIDE_REFERENCE.search(text), text
    for text in ("docs/protocol.md §5", "a shared slot", "shared/secret", "tests/peers.py"):
        assert not OUTSIDE_REFERENCE.search(text), text


def test_code_and_docs_do_not_speak_of_tracked_work() -> None:
    found = {str(path.relative_to(ROOT)): hits for path in _files(PROSE) if (hits := _hits(WORK_TRACKING, path))}
    assert found == {}, "say what the code or the protocol needs, not which work item asked for it"


def test_the_work_tracking_scan_finds_what_it_looks_for() -> None:
    word = "issue"
    for text in (f"({word} 7)", f"{word.title()} 7 parts 2-4", f"{word} #12", f"{word}s 3"):
        assert WORK_TRACKING.search(text), text
    for text in ("an issuer", "the issue is the AAD", "issued 7 tokens"):
        assert not WORK_TRACKING.search(text), text


# -- Examples use the public API ---------------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")
_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(?P<module>[\w.]+)[ \t]+import[ \t]+(?P<names>\([^)]*\)|[^\n]*)"
    r"|import[ \t]+(?P<modules>[^\n]*))",
    re.MULTILINE,
)


def _code_blocks(markdown: str) -> list[str]:
    """The contents of every fenced code block, whatever its language."""
    blocks: list[str] = []
    fence: str | None = None
    lines: list[str] = []
    for line in markdown.splitlines():
        match = _FENCE.match(line)
        if fence is None:
            if match:
                fence, lines = match.group(1), []
        elif match and match.group(1).startswith(fence) and not match.group(2).strip():
            blocks.append("\n".join(lines))
            fence = None
        else:
            lines.append(line)
    return blocks


def _is_private(dotted: str) -> bool:
    return any(part.startswith("_") for part in dotted.split("."))


def private_imports(code: str) -> list[str]:
    """Every import of a qrlogin module or name with a component that starts with ``_``."""
    found = []
    for match in _IMPORT.finditer(code):
        statement = " ".join(match.group().split())
        if match.group("module") is not None:
            module = match.group("module")
            if not (module == "qrlogin" or module.startswith("qrlogin.")):
                continue
            names = [part.split()[0] for part in match.group("names").strip("() \t").split(",") if part.strip()]
            if _is_private(module) or any(name.startswith("_") for name in names):
                found.append(statement)
        else:
            modules = [part.split()[0] for part in match.group("modules").split(",") if part.strip()]
            if any(m.split(".")[0] == "qrlogin" and _is_private(m) for m in modules):
                found.append(statement)
    return found


def _documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_private_import_scan_finds_what_it_looks_for() -> None:
    private = [
        "from qrlogin._secret import Secret",
        "import qrlogin._json",
        "import os, qrlogin._crypto as c",
        "from qrlogin.channel._common import Profile",
        "from qrlogin.channel import _common",
        "from qrlogin.login import (\n    parse_message,\n    _private,\n)",
    ]
    for code in private:
        assert private_imports(code) != [], code
    public = [
        "from qrlogin import qr",
        "from qrlogin.channel import ecies, CheckCodeEntered",
        "import qrlogin.rendezvous.client as rc",
        "from os import _exit",
        "from qrlogin.rendezvous import client as rc",
    ]
    for code in public:
        assert private_imports(code) == [], code
    assert len(_code_blocks("```python\nfrom qrlogin import qr\n```\n\n```sh\nls\n```\n")) == 2


def test_examples_use_only_public_modules() -> None:
    found = {
        str(path.relative_to(ROOT)): imports
        for path in _documents()
        if (imports := [i for block in _code_blocks(path.read_text(encoding="utf-8")) for i in private_imports(block)])
    }
    assert found == {}, "an embedder copies these examples: they must need no private name"


# -- License, version, sdist ------------------------------------------------------------------------------------


def _pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def test_the_apache_license_is_shipped() -> None:
    license_file = ROOT / "LICENSE"
    assert license_file.is_file(), "LICENSE is missing"
    text = license_file.read_text(encoding="utf-8")
    assert text.lstrip().startswith("Apache License")
    for phrase in ("Version 2.0, January 2004", "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION"):
        assert phrase in text
    assert "END OF TERMS AND CONDITIONS" in text
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    assert "LICENSE" in project["license-files"]


def test_the_version_is_defined_once_in_the_package() -> None:
    pyproject = _pyproject()
    project = pyproject["project"]
    assert "version" not in project, "pyproject must not repeat the version: it reads qrlogin.__version__"
    assert "version" in project["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "qrlogin.__version__"}
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+(?:(?:a|b|rc)[0-9]+)?", qrlogin.__version__)
    definitions = [
        path for path in _files(("src",)) if path.suffix == ".py" and "__version__ =" in path.read_text("utf-8")
    ]
    assert definitions == [ROOT / "src" / "qrlogin" / "__init__.py"]


def test_the_sdist_carries_what_the_tests_read() -> None:
    manifest = ROOT / "MANIFEST.in"
    assert manifest.is_file()
    directives = {tuple(line.split()) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()}
    for directory in ("docs", "spec_vectors", "tests", "fuzz", "benchmarks", "scripts"):
        assert ("graft", directory) in directives, directory
    assert ("include", "LICENSE", "README.md") in directives
    assert ("prune", "interop/node/node_modules") in directives
    assert any(d[0] == "include" and "interop/node/*.cjs" in d for d in directives)
