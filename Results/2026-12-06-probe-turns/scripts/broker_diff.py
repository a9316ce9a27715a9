"""The broker's histograms between two scrapes of its metrics endpoint (before and after a
probe): loop turns and inbox waits per shard, produce requests by part, as counts over bounds.
    python3 broker_diff.py metrics0.txt metrics.txt"""
import re
import sys

SAMPLE = re.compile(r'(apus_[a-z_]+)_bucket\{([^}]*),?le="([^"]+)"\} (\d+)')


def load(path):
    out = {}
    for line in open(path):
        m = SAMPLE.match(line)
        if m:
            out[(m.group(1), m.group(2).rstrip(','), m.group(3))] = int(m.group(4))
    return out


def over(a, b, name, labels, bounds):
    total = b[(name, labels, '+Inf')] - a.get((name, labels, '+Inf'), 0)
    counts = ' '.join(f">{float(le) * 1000:g}ms:{total - (b[(name, labels, le)] - a.get((name, labels, le), 0))}" for le in bounds)
    return total, counts


a, b = load(sys.argv[1]), load(sys.argv[2])
for name, what in [('apus_shard_job_delay_seconds', 'job waits'), ('apus_shard_turn_duration_seconds', 'turns')]:
    for labels in sorted({k[1] for k in b if k[0] == name}):
        total, counts = over(a, b, name, labels, ['0.001', '0.0025', '0.005', '0.01', '0.025'])
        print(labels.replace('"', ''), what, total, counts)
for part in ['queue', 'handler', 'wait', 'send', 'duration']:
    total, counts = over(a, b, f'apus_request_{part}_seconds', 'request="Produce"', ['0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1'])
    print(part, total, counts)
