#!/usr/bin/env python3
"""Every metric the alert rules and the dashboard query must be exposed.

    metric_names.py RULES_YML DASHBOARD_JSON METRICS_TEXT...

Reads the PromQL expressions of the rules and of every dashboard target,
takes the metric names they select, and fails (exit 1) naming each one no
scrape in METRICS_TEXT exposes with at least one sample. Names are compared
with the samples' own names, so `_total`, `_bucket`, `_sum` and `_count`
must be written as Prometheus stores them (`voucherd_claims_total`, not
`voucherd_claims`). `up` is made by Prometheus itself and is accepted.
"""

import json
import re
import sys

import yaml

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "inf", "nan",
}
PROMETHEUS_MADE = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr):
    """The metric names an expression selects (a heuristic PromQL reader:
    strings, label matchers, ranges and grouping clauses are removed first;
    what is left that is not a function, keyword or number is a metric)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )
    names = set()
    for match in IDENT.finditer(text):
        name = match.group(0)
        before = text[: match.start()]
        if before and (before[-1].isdigit() or before[-1] == "."):
            continue  # part of a number such as 1e9 or a duration
        after = text[match.end():].lstrip()
        if after.startswith("("):
            continue  # a function
        if name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


def rule_exprs(path):
    with open(path) as file:
        document = yaml.safe_load(file)
    for group in document["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule.get("record"), rule["expr"]


def dashboard_exprs(path):
    with open(path) as file:
        document = json.load(file)
    panels = list(document.get("panels", []))
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            if "expr" in target:
                yield panel.get("title", "?"), target["expr"]


def exposed(paths):
    names = set()
    for path in paths:
        with open(path) as file:
            for line in file:
                if line.startswith("#") or not line.strip():
                    continue
                match = IDENT.match(line)
                if match:
                    names.add(match.group(0))
    return names


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    rules, dashboard, scrapes = argv[1], argv[2], argv[3:]
    have = exposed(scrapes)
    if not have:
        print("FAIL: the scrapes hold no samples", file=sys.stderr)
        return 1
    used = {}
    for source, items in (("rule", rule_exprs(rules)), ("panel", dashboard_exprs(dashboard))):
        count = 0
        for where, expr in items:
            count += 1
            names = metric_names(expr)
            if not names:
                print(f"FAIL: {source} {where!r} selects no metric: {expr}", file=sys.stderr)
                return 1
            for name in names:
                used.setdefault(name, set()).add(f"{source} {where!r}")
        if count == 0:
            print(f"FAIL: no {source} expressions found", file=sys.stderr)
            return 1
    missing = sorted(name for name in used if name not in have and name not in PROMETHEUS_MADE)
    for name in missing:
        print(f"FAIL: {name} is not exposed; used by {', '.join(sorted(used[name]))}", file=sys.stderr)
    print(f"{len(used)} metric names in rules and dashboard; {len(have)} sample names exposed; "
          f"{len(missing)} missing")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
