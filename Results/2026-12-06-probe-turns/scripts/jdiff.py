import sys,re
def load(f):
    d={}
    for l in open(f):
        m=re.match(r'apus_shard_job_delay_seconds_bucket\{shard="(\d+)",le="([^"]+)"\} (\d+)',l)
        if m: d[(m.group(1),m.group(2))]=int(m.group(3))
    return d
a=load(sys.argv[1]); b=load(sys.argv[2])
for sh in sorted({k[0] for k in b}):
    tot=b[(sh,'+Inf')]-a.get((sh,'+Inf'),0)
    print('shard',sh,'job waits',tot,' '.join(f">{float(le)*1000:g}ms:{tot-(b[(sh,le)]-a.get((sh,le),0))}" for le in ['0.0005','0.001','0.0025','0.005','0.01','0.025']))
