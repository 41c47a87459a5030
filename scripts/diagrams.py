"""Write every machine's state diagram into the docs, from the machine's transitions table.

A doc asks for a diagram with a marker naming the module whose ``MACHINE`` (a :class:`qrlogin._machine.Machine`)
it shows; everything up to the closing marker is replaced::

    <!-- diagram: qrlogin.channel.ecies -->
    ```mermaid
    ...
    ```
    <!-- /diagram -->

``python scripts/diagrams.py`` rewrites the blocks; ``--check`` changes nothing and exits 1 if any block is stale
(``tests/test_diagrams.py`` runs it).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- diagram: (?P<module>[\w.]+) -->\n)(?P<body>.*?)(<!-- /diagram -->)", re.DOTALL)


def render(module: str) -> str:
    machine = importlib.import_module(module).MACHINE
    return f"```mermaid\n{machine.mermaid()}```\n"


def refresh(text: str) -> str:
    return BLOCK.sub(lambda match: match.group(1) + render(match.group("module")) + match.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a diagram is stale, change nothing")
    args = parser.parse_args(argv)
    stale = []
    for doc in sorted((ROOT / "docs").glob("*.md")):
        text = doc.read_text(encoding="utf-8")
        fresh = refresh(text)
        if fresh != text:
            stale.append(doc.relative_to(ROOT))
            if not args.check:
                doc.write_text(fresh, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'rewrote'}: {path}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
