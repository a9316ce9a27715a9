#!/usr/bin/env python3
"""Samples /proc/meminfo (Dirty, Writeback, MemFree, Cached), a few /proc/vmstat counters and
/proc/stat's per-CPU times every 100 ms for ARGV[1] seconds; one JSON object per line."""
import json, sys, time
KEYS = ("Dirty", "Writeback", "MemFree", "Cached")
VM = ("pgalloc_normal", "pgfault", "pgscan_kswapd", "pgscan_direct", "allocstall_normal", "nr_dirtied", "nr_written")
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    row = {"t": time.monotonic()}
    for line in open("/proc/meminfo"):
        k, v = line.split(":", 1)
        if k in KEYS: row[k] = int(v.split()[0]) // 1024
    for line in open("/proc/vmstat"):
        k, v = line.split()
        if k in VM: row[k] = int(v)
    row["cpu"] = [list(map(int, l.split()[1:9])) for l in open("/proc/stat") if l.startswith("cpu") and l[3].isdigit()]
    print(json.dumps(row), flush=True)
    time.sleep(0.1)
