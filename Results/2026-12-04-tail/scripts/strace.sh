#!/bin/bash
# Which threads of apus serve make fsync/fdatasync/rename/unlink/openat(O_CREAT) calls, and how long they take,
# during a 12 s maximum-rate produce run with acks=all under fsync-on-ack-all (syncs on the append path) and
# small segments (rolls, retention).
bin=$1; label=$2; out=$3; data=/work/exp-strace-$label; rm -rf $data; mkdir -p $out
port=$((19900 + RANDOM % 90))
$bin serve --data-dir $data --listen 127.0.0.1:$port --num-partitions 4 --durability fsync-on-ack-all --io-backend posix \
  --set segment.bytes=67108864 --set retention.bytes=268435456 2> $out/$label-strace-broker.log &
bpid=$!; sleep 2
strace -f -T -qq -e trace=fsync,fdatasync,rename,unlink,renameat,unlinkat -p $bpid -o $out/$label-strace.txt &
spid=$!; sleep 1
ls /proc/$bpid/task | while read t; do echo "$t $(cat /proc/$bpid/task/$t/comm)"; done > $out/$label-threads.txt
$bin perf produce --bootstrap 127.0.0.1:$port --topic s --duration 12 --record-size 100 --throughput -1 \
  --producer-props acks=all batch.size=1048576 linger.ms=5 > $out/$label-strace-produce.txt 2>&1
ls /proc/$bpid/task | while read t; do echo "$t $(cat /proc/$bpid/task/$t/comm)"; done >> $out/$label-threads.txt
kill $spid; sleep 0.5; kill -TERM $bpid; wait $bpid 2>/dev/null; rm -rf $data
python3 - $out/$label-strace.txt $out/$label-threads.txt <<'PY'
import sys,re,collections
names=dict(l.split(None,1) for l in open(sys.argv[2]) if l.strip())
names={k:v.strip() for k,v in names.items()}
stats=collections.defaultdict(lambda:[0,0.0,0.0])
for line in open(sys.argv[1]):
    m=re.match(r'(\d+)\s+(\w+)\(.*<([\d.]+)>',line)
    if not m: continue
    tid,call,t=m.group(1),m.group(2),float(m.group(3))
    who=names.get(tid,'?')
    who='shard' if who.startswith('apus-shard') else who
    s=stats[(who,call)]; s[0]+=1; s[1]+=t; s[2]=max(s[2],t)
for (who,call),(n,tot,mx) in sorted(stats.items()):
    print(f"{who:16s} {call:10s} calls {n:6d} total {tot*1000:9.1f} ms longest {mx*1000:8.1f} ms")
PY
