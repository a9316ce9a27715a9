#!/usr/bin/env python3
"""Produce throughput and catch-up fetch GB/s over TLS vs plaintext, with the broker's CPU per GB.

One `apus serve` (release build) with a PLAINTEXT and an SSL listener per round, a fresh data
directory each round; kcat (librdkafka) produces a file of 1 KiB records through one listener and
then reads the topic back from the beginning (catch-up: the data is in the page cache). The
broker's CPU is utime+stime from /proc/<pid>/stat over each phase; the client's from
RUSAGE_CHILDREN. Rounds alternate the order of the variants.

usage: tls-bench.py APUS_BIN OUT_DIR [rounds] [megabytes]
"""
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

apus, out = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
megabytes = int(sys.argv[4]) if len(sys.argv) > 4 else 512
record = 1024
os.makedirs(out, exist_ok=True)
tick = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd, **kw):
    subprocess.run(cmd, check=True, **kw)


work = tempfile.mkdtemp(prefix="apus-tls-bench-")
certs = os.path.join(work, "certs")
os.makedirs(certs)
run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench CA"],
    cwd=certs, capture_output=True)
with open(os.path.join(certs, "san.cnf"), "w") as f:
    f.write("subjectAltName=IP:127.0.0.1\n")
run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], cwd=certs, capture_output=True)
run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2",
     "-extfile", "san.cnf"], cwd=certs, capture_output=True)
with open(os.path.join(certs, "server.pem"), "w") as f:
    f.write(open(os.path.join(certs, "server.crt")).read() + open(os.path.join(certs, "server.key")).read())

payload = os.path.join(work, "payload.txt")
count = megabytes * 1024 * 1024 // record
line = (b"abcdefghijklmnopqrstuvwxyz0123456789" * 30)[: record - 1] + b"\n"
with open(payload, "wb") as f:
    for _ in range(count // 1024):
        f.write(line * 1024)
size = os.path.getsize(payload)

results = []
for r in range(rounds):
    order = ["plaintext", "ssl"] if r % 2 == 0 else ["ssl", "plaintext"]
    for variant in order:
        data = os.path.join(work, f"data-{r}-{variant}")
        plain, tls = free_port(), free_port()
        log = open(os.path.join(out, f"broker-{r}-{variant}.log"), "wb")
        broker = subprocess.Popen([apus, "serve", "--data-dir", data, "--set", f"listeners=PLAINTEXT://127.0.0.1:{plain},SSL://127.0.0.1:{tls}",
                                   "--set", f"ssl.keystore.location={certs}/server.pem", "--set", "metrics.listen=off",
                                   "--set", "num.partitions=2"], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", tls), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        port = tls if variant == "ssl" else plain
        common = ["kcat", "-b", f"127.0.0.1:{port}", "-t", "bench", "-q"]
        if variant == "ssl":
            common += ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={certs}/ca.pem"]
        phases = {}
        for phase, cmd in [("produce", common + ["-P", "-l", payload, "-X", "acks=1", "-X", "linger.ms=5", "-X", "batch.size=1000000",
                                                 "-X", "queue.buffering.max.kbytes=1048576"]),
                           ("catch-up", common + ["-C", "-o", "beginning", "-e", "-X", "fetch.max.bytes=52428800",
                                                  "-X", "max.partition.fetch.bytes=8388608", "-f", "%s"])]:
            b0, c0, t0 = cpu_seconds(broker.pid), children_cpu(), time.monotonic()
            with open(os.devnull, "wb") as sink:
                run(cmd, stdout=sink, timeout=600)
            seconds = time.monotonic() - t0
            broker_cpu, client_cpu = cpu_seconds(broker.pid) - b0, children_cpu() - c0
            phases[phase] = {"seconds": seconds, "MBps": size / seconds / 1e6, "brokerCpuSeconds": broker_cpu,
                             "brokerCpuSecondsPerGB": broker_cpu / (size / 1e9), "clientCpuSeconds": client_cpu}
        broker.terminate()
        broker.wait(timeout=60)
        log.close()
        results.append({"round": r, "variant": variant, "bytes": size, "records": count, **phases})
        print(json.dumps(results[-1]), flush=True)
        subprocess.run(["rm", "-rf", data])

summary = {}
for variant in ["plaintext", "ssl"]:
    for phase in ["produce", "catch-up"]:
        rows = [x[phase] for x in results if x["variant"] == variant]
        summary[f"{variant} {phase}"] = {k: statistics.median(row[k] for row in rows) for k in ["MBps", "brokerCpuSecondsPerGB", "clientCpuSeconds"]}
for phase in ["produce", "catch-up"]:
    ratios = [x[phase]["MBps"] / y[phase]["MBps"] for x, y in zip([x for x in results if x["variant"] == "ssl"], [x for x in results if x["variant"] == "plaintext"])]
    summary[f"ssl/plaintext {phase} throughput, per round, median"] = statistics.median(ratios)
json.dump({"rounds": results, "medians": summary, "recordBytes": record, "megabytes": megabytes}, open(os.path.join(out, "result.json"), "w"), indent=2)
print(json.dumps(summary, indent=2))
subprocess.run(["rm", "-rf", work])
