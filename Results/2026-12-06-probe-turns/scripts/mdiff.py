import sys,re
def load(f):
    d={}
    for l in open(f):
        m=re.match(r'(apus_request_(duration|send|queue|wait|handler)_seconds_bucket)\{request="Produce",le="([^"]+)"\} (\d+)',l)
        if m: d[(m.group(2),m.group(3))]=int(m.group(4))
    return d
a=load(sys.argv[1]); b=load(sys.argv[2])
for kind in ['queue','handler','wait','send','duration']:
    tot=b[(kind,'+Inf')]-a[(kind,'+Inf')]
    row=[]
    for le in ['0.001','0.0025','0.005','0.01','0.025','0.05','0.1']:
        over=tot-(b[(kind,le)]-a[(kind,le)])
        row.append(f">{float(le)*1000:g}ms:{over}")
    print(kind, tot, ' '.join(row))
