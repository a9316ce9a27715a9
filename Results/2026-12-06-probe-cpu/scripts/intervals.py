#!/usr/bin/env python3
"""Per `apus perf produce --json` document: p99 / p99.9 / max from the intended send (ms), and
the intervals (of --reporting-interval) whose maximum was over 10 ms."""
import json,sys
for f in sys.argv[1:]:
    d=json.load(open(f))
    r=d['run']; ot=r.get('overTime') or []
    lat=r['latency']['produce.intended']
    spikes=[(round(iv['startSeconds'],1),round(iv['maxMs'],1)) for iv in ot if iv['maxMs']>10]
    print(f, 'p99 %.1f p99.9 %.1f max %.1f' % (lat['p99'], lat['p999'], lat['max']), 'intervals>10ms', len(spikes), spikes[:14])
