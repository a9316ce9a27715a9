# Where the shard threads were switched out during the probe, and for how long until they ran
# again (wait + scheduling delay), from `perf sched timehist` output filtered to the shard threads.
import collections, re, sys
rows = []
for line in open(sys.argv[1]):
    m = re.match(r'\s*([\d.]+)\s+\[(\d+)\]\s+(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(.*)', line)
    if m:
        rows.append((float(m[1]), m[3], float(m[4]), float(m[5]), float(m[6]), m[7]))
by_task = collections.defaultdict(list)
for r in rows:
    by_task[r[1]].append(r)
agg = collections.defaultdict(lambda: [0, 0.0, 0.0])
for task, rs in by_task.items():
    for a, b in zip(rs, rs[1:]):
        where = ' <- '.join(a[5].split(' <- ')[:4])
        if 'epoll_wait' in where or 'io_cqring_wait' in where:
            continue  # waiting for work, not stalled
        s = agg[where]
        s[0] += 1
        s[1] += b[2] + b[3]
        s[2] = max(s[2], b[2] + b[3])
print(f"{'switches':>8} {'total ms':>9} {'longest ms':>10}  switched out at")
for where, (n, total, longest) in sorted(agg.items(), key=lambda x: -x[1][1])[:8]:
    print(f"{n:8d} {total:9.1f} {longest:10.1f}  {where}")
