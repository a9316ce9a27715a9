#!/usr/bin/env python3
"""Paired on/off comparison of the metrics-cost runs: per round, on/off throughput; the mean of
the per-round ratios with a bootstrap 95% interval (10,000 resamples of rounds), and the same for
the unpaired means. usage: analyze.py RUN_DIR"""
import glob
import json
import os
import random
import statistics
import sys

d = sys.argv[1]
rate = {}
for path in glob.glob(os.path.join(d, "*-*.json")):
    name = os.path.basename(path)[:-5]
    variant, r = name.split("-")
    doc = json.load(open(path))
    value = doc["run"]["produced"]["recordsPerSecond"]
    rate.setdefault(int(r), {})[variant] = float(value)
rounds = sorted(r for r in rate if "on" in rate[r] and "off" in rate[r])
ratios = [rate[r]["on"] / rate[r]["off"] - 1 for r in rounds]
random.seed(1)
boot = sorted(statistics.mean(random.choices(ratios, k=len(ratios))) for _ in range(10000))
off = [rate[r]["off"] for r in rounds]
on = [rate[r]["on"] for r in rounds]
print(f"rounds: {len(rounds)}")
print(f"off: mean {statistics.mean(off)/1e6:.2f} M rec/s, median {statistics.median(off)/1e6:.2f}; on: mean {statistics.mean(on)/1e6:.2f}, median {statistics.median(on)/1e6:.2f}")
print(f"paired on/off - 1: mean {statistics.mean(ratios)*100:+.2f} %, median {statistics.median(ratios)*100:+.2f} %, "
      f"95% CI [{boot[250]*100:+.2f} %, {boot[9750]*100:+.2f} %]")
for r in rounds:
    print(f"  round {r}: off {rate[r]['off']/1e6:.2f}  on {rate[r]['on']/1e6:.2f}  ({(rate[r]['on']/rate[r]['off']-1)*100:+.1f} %)")
