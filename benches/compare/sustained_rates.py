"""The offered rates at which the anchors' sweeps were sustained (every request a 200, goodput at
least 99 % of the offered rate), comma-separated, for serve_anchors.sh to run densebatch at.

Usage: sustained_rates.py REPORT.json...
"""

import json
import sys

rates = set()
for path in sys.argv[1:]:
    with open(path) as f:
        for r in json.load(f)["runs"]:
            if r["ok"] == r["scheduled"] and r["goodput_rps"] >= 0.99 * r["offered_rps"]:
                rates.add(round(r["offered_rps"]))
print(",".join(str(r) for r in sorted(rates)))
