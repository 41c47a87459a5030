"""Print a ``qrlogin check-client --json`` report as a scorecard in the form docs/conformance.md uses.

    python scripts/scorecard.py REPORT.json "TITLE" "INTRO"      # the card, in Markdown
    python scripts/scorecard.py REPORT.json --expected           # the not-passing table a scorecard test records

The card counts the grades per target and lists every result that is not a pass, with its evidence. After a client
or a judge changes, run the suite with ``--json``, paste the card into docs/conformance.md and the table into the
scorecard test.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path
from typing import Any


def card(report: dict[str, Any], title: str, intro: str) -> str:
    results: list[dict[str, Any]] = report["scenarios"]
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for result in results:
        counts[result["target"]][result["grade"]] += 1
    lines = [
        f"### {title}",
        "",
        intro,
        "",
        "| target | pass | warn | fail | skip | MUST failed |",
        "|---|---|---|---|---|---|",
    ]
    for target, count in counts.items():
        must = sum(1 for r in results if r["target"] == target and r["level"] == "MUST" and r["grade"] == "fail")
        lines.append(f"| {target} | {count['pass']} | {count['warn']} | {count['fail']} | {count['skip']} | {must} |")
    lines += ["", "| scenario | target | level | grade | evidence |", "|---|---|---|---|---|"]
    for r in results:
        if r["grade"] in ("fail", "warn"):
            evidence = r["evidence"].replace("|", "\\|")
            lines.append(f"| `{r['scenario']}` | {r['target']} | {r['level']} | {r['grade']} | {evidence} |")
    return "\n".join(lines) + "\n"


def expected(report: dict[str, Any]) -> str:
    rows = [
        f'    ("{r["scenario"]}", "{r["target"]}"): "{r["grade"]}",'
        for r in report["scenarios"]
        if r["grade"] in ("fail", "warn")
    ]
    return "EXPECTED_NOT_PASSING = {\n" + "\n".join(rows) + "\n}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("title", nargs="?", default="")
    parser.add_argument("intro", nargs="?", default="")
    parser.add_argument("--expected", action="store_true", help="print the not-passing table instead")
    args = parser.parse_args()
    report = json.loads(args.report.read_text(encoding="utf-8"))
    print(expected(report) if args.expected else card(report, args.title, args.intro), end="")


if __name__ == "__main__":
    main()
