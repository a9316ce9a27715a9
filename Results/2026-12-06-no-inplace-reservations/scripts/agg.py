import re,sys,collections
txt=open(sys.argv[1]).read()
ev=re.split(r'\n(?=\d\d:\d\d:\d\d tid)', txt)
agg=collections.defaultdict(list)
for e in ev:
    m=re.match(r'(\S+) tid (\d+) off (\d+) ms state (\d+)\n(.*)', e, re.S)
    if not m: continue
    t,tid,ms,st,rest=m.groups()
    frames=[l.strip().split('+')[0] for l in rest.strip().split('\n') if l.strip()]
    if any('epoll_wait' in f for f in frames): continue
    key=' < '.join([f for f in frames if f not in ('__schedule','schedule','schedule_timeout','io_schedule','io_schedule_timeout','schedule_preempt_disabled')][:7])
    agg[(st,key)].append((int(ms),t))
for (st,key),v in sorted(agg.items(), key=lambda kv:-max(x[0] for x in kv[1])):
    v.sort(reverse=True)
    print(f"state {st} n={len(v)} max={v[0][0]}ms at {v[0][1]} top: {[x[0] for x in v[:6]]}\n   {key}\n")
