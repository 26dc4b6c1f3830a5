#!/usr/bin/env python3
"""Checks that every series a Grafana dashboard queries, among those whose
names start with PREFIX, is served by the Prometheus endpoint at URL.

    scripts/check_dashboard.py docs/grafana/kiln-dashboard.json cometbft_ http://127.0.0.1:26660/metrics

A histogram's _bucket/_sum/_count series count as served when the endpoint
serves them (a histogram that has seen no observation may serve none, so
check against a node that has made blocks or served requests). Exit 1 with
the missing names, so a renamed metric breaks the test, not the dashboard.
"""
import json
import re
import sys
import urllib.request


def dashboard_series(path, prefix):
    names = set()
    with open(path) as f:
        dashboard = json.load(f)
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            for name in re.findall(r"\b" + re.escape(prefix) + r"[a-zA-Z0-9_]+", target.get("expr", "")):
                names.add(name)
    return names


def served_series(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    names = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    path, prefix, url = sys.argv[1:]
    wanted = dashboard_series(path, prefix)
    if not wanted:
        sys.exit(f"{path} queries no series starting with {prefix}")
    served = served_series(url)
    missing = sorted(wanted - served)
    if missing:
        print(f"{path}: {len(missing)} of {len(wanted)} {prefix}* series are not served by {url}: {', '.join(missing)}")
        sys.exit(1)
    print(f"{path}: all {len(wanted)} {prefix}* series are served by {url}")


if __name__ == "__main__":
    main()
