"""Grades as rows: CSV (one row per submission, one column per check) and JSON (with details).

CSV columns: ``submission``, ``score``, ``max_score``, ``status``, ``reason``,
then ``<part title>: <check name>`` for each check, holding the points earned.
The JSON holds the same rows with each check's points, earned points and why
it failed, as the student's scorecard words it.
"""

from __future__ import annotations

import csv
import json

FIXED = ("submission", "score", "max_score", "status", "reason")


def _earned(outcome) -> dict:
    return {(p["title"], name): (earned, detail)
            for p in outcome.parts for name, _, earned, detail in p["lines"]}


def row(outcome, columns) -> dict:
    """The CSV row of ``outcome``: the fixed columns, then points earned per check."""
    earned = _earned(outcome)
    checks = {f"{title}: {name}": earned.get((title, name), (0, ""))[0]
              for title, name, _ in columns}
    return {"submission": outcome.submission, "score": sum(checks.values()),
            "max_score": sum(points for _, _, points in columns), "status": outcome.status,
            "reason": outcome.reason, **checks}


def write_csv(path, outcomes, columns) -> None:
    """Write one row per outcome to ``path`` (UTF-8, a header row first)."""
    header = [*FIXED, *(f"{title}: {name}" for title, name, _ in columns)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        for outcome in outcomes:
            writer.writerow(row(outcome, columns))


def write_json(path, outcomes, columns) -> None:
    """Write the rows with every check's detail to ``path``."""
    rows = []
    for outcome in outcomes:
        earned = _earned(outcome)
        fixed = {k: v for k, v in row(outcome, columns).items() if k in FIXED}
        fixed["checks"] = [
            {"part": title, "name": name, "points": points,
             "earned": earned.get((title, name), (0, ""))[0],
             "detail": earned.get((title, name), (0, "not run"))[1]}
            for title, name, points in columns]
        rows.append(fixed)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1, ensure_ascii=False)
        f.write("\n")
