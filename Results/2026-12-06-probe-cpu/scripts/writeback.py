#!/usr/bin/env python3
"""For a capture.sh directory: each 100 ms interval of the probe with a maximum over 10 ms (*)
or the kernel writing back over 300 MB/s, beside the writeback rate, each CPU's busy % and
Dirty (MiB) from sys.txt. The probe's clock starts ~50 ms after times.txt's start (process
start, metadata, topic)."""
import json,sys
d=sys.argv[1]
t0=float(open(d+'/times.txt').readline().split()[2])+0.05
ot=json.load(open(d+'/probe.json'))['run']['overTime']
rows=[json.loads(l) for l in open(d+'/sys.txt')]
wb=[]
prev=rows[0]
for r in rows[1:]:
    dt=r['t']-prev['t']
    w=(r['nr_written']-prev['nr_written'])/dt*4096/1e6
    cpu=[]
    for a,b in zip(prev['cpu'],r['cpu']):
        dd=[y-x for x,y in zip(a,b)]; tot=sum(dd) or 1
        cpu.append(100-100*(dd[3]+dd[4])//tot)
    wb.append((prev['t']-t0, r['t']-t0, w, cpu, r['Dirty']))
    prev=r
for iv in ot:
    a=iv['startSeconds']; b=a+iv['lengthSeconds']
    ov=[x for x in wb if x[1]>a and x[0]<b]
    wbmax=max([x[2] for x in ov] or [0])
    busy=[x[3] for x in ov]
    mark='*' if iv['maxMs']>10 else ' '
    if iv['maxMs']>10 or wbmax>300:
        print(mark,'%5.2f max %5.1f p99 %5.1f lag %4.1f | writeback %5.0f MB/s busy %s dirty %s'%(a,iv['maxMs'],iv['p99Ms'],iv['generatorLagMs'],wbmax,busy,[x[4] for x in ov]))
