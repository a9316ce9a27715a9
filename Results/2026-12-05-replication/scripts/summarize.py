"""Summarizes throughput.sh's output directory: per round the C ceiling (append mode) and the RF=1
and RF=3 acks=all produce runs (records/s, p50/p99/p99.9 from the first send), each as a ratio
to the ceiling of its round, then medians. Usage: summarize.py DIR"""
import glob
import json
import os
import re
import statistics
import sys

d = sys.argv[1]
rounds = sorted(int(re.search(r"ceiling-(\d+)", f).group(1)) for f in glob.glob(os.path.join(d, "ceiling-*.txt")))
rows, ratios = [], {"rf1": [], "rf3": []}
print("| round | ceiling M rec/s | RF=1 M rec/s (×ceiling) | RF=1 p50/p99/p99.9 ms | RF=3 M rec/s (×ceiling) | RF=3 p50/p99/p99.9 ms | RF=3/RF=1 |")
print("|---|---|---|---|---|---|---|")
for r in rounds:
    ceiling = float(re.search(r"= ([\d.]+) M rec/s", open(os.path.join(d, f"ceiling-{r}.txt")).read()).group(1))
    cells, rates = [], {}
    for t in ("rf1", "rf3"):
        run = json.load(open(os.path.join(d, f"{t}-{r}.json")))["run"]
        rate = run["produced"]["recordsPerSecond"] / 1e6
        lat = run["latency"]["produce.send"]
        rates[t] = rate
        ratios[t].append(rate / ceiling)
        cells += [f"{rate:.2f} ({rate / ceiling:.2f}×)", f"{lat['p50']:.1f} / {lat['p99']:.1f} / {lat['p999']:.1f}"]
    print(f"| {r} | {ceiling:.2f} | " + " | ".join(cells) + f" | {rates['rf3'] / rates['rf1']:.2f} |")
print()
# Which topic runs first alternates by round; the second runs while the first one's gigabytes are
# still being written back, so compare runs in the same position too.
first = {"rf1": [], "rf3": []}
for r in rounds:
    t = "rf1" if r % 2 == 1 else "rf3"
    first[t].append(json.load(open(os.path.join(d, f"{t}-{r}.json")))["run"]["produced"]["recordsPerSecond"] / 1e6)
if first["rf1"] and first["rf3"]:
    print(f"first in their round: RF=1 median {statistics.median(first['rf1']):.2f} M rec/s, RF=3 median {statistics.median(first['rf3']):.2f} M rec/s "
          f"(RF=3/RF=1 {statistics.median(first['rf3']) / statistics.median(first['rf1']):.2f})")
print(f"median ratio to the ceiling: RF=1 {statistics.median(ratios['rf1']):.2f}×, RF=3 {statistics.median(ratios['rf3']):.2f}× "
      f"(RF=3/RF=1 of the medians: {statistics.median(ratios['rf3']) / statistics.median(ratios['rf1']):.2f})")
