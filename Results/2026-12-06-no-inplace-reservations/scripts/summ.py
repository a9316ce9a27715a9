import json,glob,sys
from hdrh.histogram import HdrHistogram
for f in sorted(glob.glob(sys.argv[1]+'/points/*/result.json')):
    r=json.load(open(f))
    for rep in r['repeats']:
        lat=rep['latency']
        hi=HdrHistogram.decode(lat['produce.intended']['histogram'])
        hs=HdrHistogram.decode(lat['produce.send']['histogram'])
        st=rep.get('brokerStalls') or {}
        print(f.split('/')[-2], 'p99.9 intended %.1f send %.1f ms' % (hi.get_value_at_percentile(99.9)/1e6, hs.get_value_at_percentile(99.9)/1e6),
              'stalls', st.get('stalls'), st.get('byCause'), 'longest %.1f %s' % (st.get('longestMs',0), st.get('longestCause','')), 'declared', st.get('declaredDiskWaits'))
