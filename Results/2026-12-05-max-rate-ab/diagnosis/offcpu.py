import re, collections, sys
prev = {}
tot = collections.defaultdict(float); cnt = collections.Counter(); mx = collections.defaultdict(float)
for l in open(sys.argv[1]):
    m = re.match(r'\s*([0-9.]+)\s+\[(\d+)\]\s+(\S+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+(\S+)\s*(.*)', l)
    if not m: continue
    task = m.group(3)
    if not re.match(sys.argv[2] if len(sys.argv)>2 else 'apus-shard', task): continue
    wait = float(m.group(4)); st = m.group(7); chain = m.group(8)
    if task in prev:
        c = prev[task]
        tot[c] += wait; cnt[c] += 1; mx[c] = max(mx[c], wait)
    s = chain
    if 'epoll_wait' in s: c='epoll_wait'
    elif st.startswith('R'): c='preempted'
    else: c = st + ' ' + ' <- '.join(chain.split(' <- ')[:9])
    prev[task] = c
for c in sorted(tot, key=lambda c: -tot[c])[:14]:
    print(f"{tot[c]:9.1f} ms  n={cnt[c]:5d}  max={mx[c]:7.2f}  {c[:330]}")
