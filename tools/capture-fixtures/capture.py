#!/usr/bin/env python3
"""Capture golden Kafka request fixtures from real clients.

Runs real Kafka clients against fake_broker.py (127.0.0.1 only) and writes the
request frames they send (without the 4-byte size prefix) to
Tests/KafkaProtocolTests/Fixtures/<api>_request_v<N>_<n>.bin plus manifest.json.
Every Produce request's RecordBatches are decoded here (CRC-32C checked,
decompressed) and compared with the records the client was asked to send, so
each manifest "expected" entry is verified, not guessed.

Needs installed (the script does not install anything):
  apt:  kcat            (Debian bookworm: kcat 1.7.1, librdkafka 2.0.2)
  pip:  confluent-kafka kafka-python python-snappy lz4 zstandard
        (python-snappy pulls in cramjam; kafka-python 3.x imports `snappy`,
         `lz4.frame` and `zstandard` for its codecs, and so does this script)
  e.g.  apt-get install -y kcat
        pip install confluent-kafka kafka-python python-snappy lz4 zstandard

Usage:  python3 tools/capture-fixtures/capture.py [--out DIR] [--keep-raw DIR]
Rerunnable: it deletes *.bin and manifest.json in the output folder first.
Record timestamps differ from run to run, so the bytes change on every capture.
"""
import argparse
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_OUT = os.path.join(REPO, "Tests", "KafkaProtocolTests", "Fixtures")
BROKER = os.path.join(HERE, "fake_broker.py")

API_NAMES = {
    0: "produce", 1: "fetch", 2: "list_offsets", 3: "metadata", 8: "offset_commit",
    9: "offset_fetch", 10: "find_coordinator", 11: "join_group", 12: "heartbeat",
    13: "leave_group", 14: "sync_group", 18: "api_versions", 19: "create_topics",
    20: "delete_topics", 22: "init_producer_id",
}
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
TOPIC = "golden"


# ====================================================================== records
# Record specs are dicts {"key": str|None, "value": str|None, "headers": [[k, v|None]...]}
# plus optional "partition" for explicit partitioning.

def R(key, value, headers=(), partition=None):
    d = {"key": key, "value": value, "headers": [list(h) for h in headers]}
    if partition is not None:
        d["partition"] = partition
    return d


KCAT_LINES = [
    ("key-1", "value-1"),
    ("key-2", "hello golden"),
    ("key-3", ""),                  # empty value
    (None, "no key on this line"),  # no delimiter -> null key
    ("key-5", "ünïcödé ✓ five"),
]
KCAT_HEADERS = [["trace", "abc123"], ["source", "kcat"]]

PY_RECORDS = [
    R("user-1", '{"n":1}', [("trace", "t1")]),
    R("user-2", "second value: " + "golden " * 16, [("trace", "t2"), ("source", "python")]),  # compressible
    R(None, "record without key", []),
    R("user-4", None, [("tombstone", "yes")]),   # null value (tombstone)
    R("user-5", "ünïcödé ✓ five", [("emoji", "🦅"), ("empty", "")]),
]


# ====================================================================== client subcommands
def _hdrs(h):
    return [(k, None if v is None else v.encode()) for k, v in h]


def _enc(s):
    return None if s is None else s.encode()


def client_confluent_produce(spec):
    from confluent_kafka import Producer
    conf = {"bootstrap.servers": spec["bootstrap"], "linger.ms": 500,
            "client.id": spec.get("client_id", "confluent-golden")}
    conf.update(spec.get("conf", {}))
    p = Producer(conf)
    errors = []

    def cb(err, msg):
        if err:
            errors.append(str(err))
    for r in spec["records"]:
        kw = {}
        if "partition" in r:
            kw["partition"] = r["partition"]
        p.produce(spec["topic"], key=_enc(r["key"]), value=_enc(r["value"]),
                  headers=_hdrs(r["headers"]), on_delivery=cb, **kw)
    left = p.flush(20)
    if left or errors:
        sys.exit("confluent produce failed: left=%s errors=%s" % (left, errors))


def client_confluent_consume(spec):
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": spec["bootstrap"], "group.id": spec["group"],
                  "client.id": "confluent-golden-consumer",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "heartbeat.interval.ms": 300, "session.timeout.ms": 6000,
                  "fetch.wait.max.ms": 200})
    c.subscribe([spec["topic"]])
    got, last = [], None
    deadline = time.time() + 25
    while len(got) < spec["count"] and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got.append(m)
        last = m
    if len(got) < spec["count"]:
        sys.exit("confluent consume: got %d of %d" % (len(got), spec["count"]))
    c.commit(message=last, asynchronous=False)
    time.sleep(1.0)  # let a heartbeat or two go out
    c.close()        # LeaveGroup


def client_confluent_admin(spec):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": spec["bootstrap"], "client.id": "confluent-golden-admin"})
    fs = a.create_topics([NewTopic("golden-admin", num_partitions=3, replication_factor=1,
                                   config={"retention.ms": "60000"})], operation_timeout=5)
    for f in fs.values():
        f.result(timeout=15)
    fs = a.delete_topics(["golden-admin"], operation_timeout=5)
    for f in fs.values():
        f.result(timeout=15)


def client_kafkapython_produce(spec):
    from kafka import KafkaProducer
    kw = {"bootstrap_servers": spec["bootstrap"], "linger_ms": 500,
          "client_id": spec.get("client_id", "kafka-python-golden")}
    kw.update(spec.get("conf", {}))
    p = KafkaProducer(**kw)
    futs = []
    for r in spec["records"]:
        futs.append(p.send(spec["topic"], key=_enc(r["key"]), value=_enc(r["value"]),
                           headers=_hdrs(r["headers"]), partition=r.get("partition")))
    p.flush(20)
    for f in futs:
        f.get(timeout=20)
    p.close(timeout=10)


def client_kafkapython_consume(spec):
    from kafka import KafkaConsumer
    c = KafkaConsumer(spec["topic"], bootstrap_servers=spec["bootstrap"], group_id=spec["group"],
                      client_id="kafka-python-golden-consumer", auto_offset_reset="earliest",
                      enable_auto_commit=False, heartbeat_interval_ms=300, session_timeout_ms=6000,
                      fetch_max_wait_ms=200, consumer_timeout_ms=20000)
    got = 0
    for _ in c:
        got += 1
        if got >= spec["count"]:
            break
    if got < spec["count"]:
        sys.exit("kafka-python consume: got %d of %d" % (got, spec["count"]))
    c.commit()
    time.sleep(1.0)
    c.close()


def client_kafkapython_admin(spec):
    from kafka.admin import KafkaAdminClient, NewTopic
    a = KafkaAdminClient(bootstrap_servers=spec["bootstrap"], client_id="kafka-python-golden-admin")
    a.create_topics([NewTopic("golden-admin", num_partitions=3, replication_factor=1,
                              topic_configs={"retention.ms": "60000"})])
    a.delete_topics(["golden-admin"])
    a.close()


CLIENTS = {n[len("client_"):]: f for n, f in globals().items() if n.startswith("client_")}


# ====================================================================== versions
def client_versions():
    v = {}
    out = subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout
    kv = lib = "?"
    for line in out.splitlines():
        if line.startswith("Version "):
            kv = line.split()[1]
            lib = line.split("librdkafka ")[1].split()[0]
    v["kcat"] = "kcat %s (librdkafka %s)" % (kv, lib)
    import confluent_kafka
    v["confluent"] = "confluent-kafka-python %s (librdkafka %s)" % (
        confluent_kafka.__version__, confluent_kafka.libversion()[0])
    import kafka
    v["kafka-python"] = "kafka-python %s" % kafka.__version__
    return v


# ====================================================================== record batch decoding
def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC_T = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(b, p):
    shift = out = 0
    while True:
        x = b[p]
        p += 1
        out |= (x & 0x7F) << shift
        if not x & 0x80:
            return (out >> 1) ^ -(out & 1), p
        shift += 7


def decompress(codec, data, notes):
    if codec == 0:
        return data
    if codec == 1:
        notes["gzipHeader"] = data[:10].hex()
        return gzip.decompress(data)
    if codec == 2:
        import snappy
        if data[:8] == b"\x82SNAPPY\x00":
            notes["snappyFraming"] = "xerial"
            notes["xerialVersions"] = list(struct.unpack_from(">ii", data, 8))
            out, p = bytearray(), 16
            blocks = 0
            while p < len(data):
                (n,) = struct.unpack_from(">i", data, p)
                out += snappy.decompress(data[p + 4:p + 4 + n])
                p += 4 + n
                blocks += 1
            notes["xerialBlocks"] = blocks
            return bytes(out)
        notes["snappyFraming"] = "raw"
        return snappy.decompress(data)
    if codec == 3:
        import lz4.frame
        # LZ4 frame: magic(4) FLG BD [content size 8] [dictID 4] HC
        flg, bd = data[4], data[5]
        notes["lz4Frame"] = {
            "magic": data[:4].hex(), "FLG": "%02x" % flg, "BD": "%02x" % bd,
            "blockIndependent": bool(flg & 0x20), "blockChecksum": bool(flg & 0x10),
            "contentSizePresent": bool(flg & 0x08), "contentChecksum": bool(flg & 0x04),
            "blockMaxSize": {4: "64KB", 5: "256KB", 6: "1MB", 7: "4MB"}.get((bd >> 4) & 7),
        }
        return lz4.frame.decompress(data)
    if codec == 4:
        import zstandard
        params = zstandard.get_frame_parameters(data)
        notes["zstdFrame"] = {"contentSize": params.content_size if params.content_size != zstandard.CONTENTSIZE_UNKNOWN else None,
                              "windowSize": params.window_size, "hasChecksum": params.has_checksum}
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    raise ValueError("codec %d" % codec)


def decode_batches(blob):
    """Decode a produce 'records' blob into a list of batch dicts."""
    batches, pos = [], 0
    while pos < len(blob):
        base_off, blen, ple, magic, crc = struct.unpack_from(">qiibI", blob, pos)
        end = pos + 12 + blen
        if magic != 2:
            raise ValueError("magic %d batch (legacy message set)" % magic)
        attrs, lod, bts, mts, pid, pep, bseq, cnt = struct.unpack_from(">hiqqqhii", blob, pos + 21)
        crc_ok = crc32c(blob[pos + 21:end]) == crc
        notes = {}
        codec = attrs & 7
        data = decompress(codec, blob[pos + 61:end], notes)
        recs, p = [], 0
        for _ in range(cnt):
            ln, p = varint(data, p)
            rend = p + ln
            p += 1  # attributes
            tsd, p = varint(data, p)
            od, p = varint(data, p)
            kl, p = varint(data, p)
            key = None if kl < 0 else data[p:p + kl].decode()
            p += max(kl, 0)
            vl, p = varint(data, p)
            val = None if vl < 0 else data[p:p + vl].decode()
            p += max(vl, 0)
            hn, p = varint(data, p)
            hs = []
            for _ in range(hn):
                hkl, p = varint(data, p)
                hk = data[p:p + hkl].decode()
                p += hkl
                hvl, p = varint(data, p)
                hv = None if hvl < 0 else data[p:p + hvl].decode()
                p += max(hvl, 0)
                hs.append([hk, hv])
            if p != rend:
                raise ValueError("record length mismatch")
            recs.append({"key": key, "value": val, "headers": hs, "offsetDelta": od, "timestampDelta": tsd})
        if p != len(data):
            raise ValueError("trailing bytes after records")
        batches.append({
            "baseOffset": base_off, "partitionLeaderEpoch": ple, "magic": magic, "crcValid": crc_ok,
            "attributes": attrs, "compression": CODECS[codec],
            "timestampType": "LogAppendTime" if attrs & 8 else "CreateTime",
            "transactional": bool(attrs & 16), "control": bool(attrs & 32),
            "lastOffsetDelta": lod, "producerId": pid, "producerEpoch": pep, "baseSequence": bseq,
            "recordCount": cnt, "compressedSize": end - pos - 61, "uncompressedSize": len(data),
            "codecNotes": notes, "records": recs,
        })
        pos = end
    return batches


def parse_produce(frame):
    """Parse a non-flexible (v3-v8) produce request frame."""
    p = 8
    (cl,) = struct.unpack_from(">h", frame, p)
    p += 2 + max(cl, 0)

    def s16(p):
        (n,) = struct.unpack_from(">h", frame, p)
        return (None if n < 0 else frame[p + 2:p + 2 + n].decode()), p + 2 + max(n, 0)
    txn, p = s16(p)
    acks, timeout = struct.unpack_from(">hi", frame, p)
    p += 6
    (nt,) = struct.unpack_from(">i", frame, p)
    p += 4
    topics = []
    for _ in range(nt):
        name, p = s16(p)
        (np_,) = struct.unpack_from(">i", frame, p)
        p += 4
        parts = []
        for _ in range(np_):
            idx, rl = struct.unpack_from(">ii", frame, p)
            p += 8
            blob = frame[p:p + rl] if rl >= 0 else b""
            p += max(rl, 0)
            parts.append((idx, decode_batches(blob)))
        topics.append((name, parts))
    assert p == len(frame), "produce parse did not consume the frame"
    return txn, acks, timeout, topics


# ====================================================================== runs
def kcat_run(codec, extra=(), lines=KCAT_LINES, null_empty=False, name=None):
    stdin = "".join(("%s:%s" % (k, v) if k is not None else v) + "\n" for k, v in lines)
    hdr_args = []
    for k, v in KCAT_HEADERS:
        hdr_args += ["-H", "%s=%s" % (k, v)]

    def conv(s):
        return None if (null_empty and s == "") else s
    expected = [R(conv(k), conv(v), KCAT_HEADERS) for k, v in lines]
    return {
        "name": name or "kcat-%s" % codec, "client": "kcat",
        "cmd": lambda port: ["kcat", "-P", "-b", "127.0.0.1:%d" % port, "-t", TOPIC, "-K:",
                             "-z", codec, "-X", "linger.ms=500", "-X", "batch.num.messages=1000"]
        + hdr_args + list(extra),
        "stdin": stdin, "records": expected, "compression": codec, "acks": -1,  # kcat default acks=-1 (librdkafka)
        "idempotent": False,
        "description": "kcat -P -K: -z %s %s%s" % (codec, " ".join(hdr_args), (" " + " ".join(extra)) if extra else ""),
    }


def py_run(name, client, conf, compression, acks, idempotent, records=PY_RECORDS, partitions=1, desc=""):
    return {"name": name, "client": client, "sub": client + "_produce",
            "spec": {"topic": TOPIC, "records": records, "conf": conf},
            "records": records, "compression": compression, "acks": acks, "idempotent": idempotent,
            "partitions": partitions, "description": desc or "%s producer %s" % (client, json.dumps(conf))}


def build_runs():
    runs = []
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        runs.append(kcat_run(codec))
    runs.append(kcat_run("none", extra=["-Z"], null_empty=True, name="kcat-none-Z"))
    runs[-1]["description"] += " (-Z: empty key/value sent as null)"

    C = "confluent"
    runs.append(py_run("confluent-acks0", C, {"acks": 0, "enable.idempotence": False}, "none", 0, False))
    runs.append(py_run("confluent-acks1", C, {"acks": 1, "enable.idempotence": False}, "none", 1, False))
    runs.append(py_run("confluent-acksall", C, {"acks": "all", "enable.idempotence": False}, "none", -1, False))
    runs.append(py_run("confluent-idempotent", C, {"enable.idempotence": True}, "none", -1, True))
    for codec in ["gzip", "snappy", "lz4", "zstd"]:
        runs.append(py_run("confluent-%s" % codec, C, {"acks": 1, "enable.idempotence": False,
                                                      "compression.type": codec}, codec, 1, False))
    multi = [dict(r, partition=i % 3) for i, r in enumerate(PY_RECORDS)]
    runs.append(py_run("confluent-3partitions", C, {"acks": 1, "enable.idempotence": False}, "none", 1, False,
                       records=multi, partitions=3,
                       desc="confluent producer, acks=1, topic with 3 partitions, record i -> partition i%3"))

    K = "kafkapython"
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        conf = {"acks": 1, "enable_idempotence": False}
        if codec != "none":
            conf["compression_type"] = codec
        runs.append(py_run("kafka-python-%s" % codec, K, conf, codec, 1, False))
    runs.append(py_run("kafka-python-idempotent", K, {"acks": "all", "enable_idempotence": True},
                       "none", -1, True))
    runs.append(py_run("kafka-python-3partitions", K, {"acks": 1, "enable_idempotence": False}, "none", 1, False,
                       records=multi, partitions=3,
                       desc="kafka-python producer, acks=1, topic with 3 partitions, record i -> partition i%3"))
    runs.append(py_run("kafka-python-acks0", K, {"acks": 0, "enable_idempotence": False}, "none", 0, False))

    # consumers / admin: produce first (captured too), then consume in the same broker
    runs.append({"name": "confluent-consumer-group", "client": C,
                 "pre": py_run("confluent-consumer-group-producer", C, {"acks": 1, "enable.idempotence": False},
                               "none", 1, False),
                 "sub": "confluent_consume", "spec": {"topic": TOPIC, "group": "golden-group", "count": len(PY_RECORDS)},
                 "description": "confluent Consumer: subscribe, poll all, commit sync, close"})
    runs.append({"name": "kafka-python-consumer-group", "client": K,
                 "pre": py_run("kafka-python-consumer-group-producer", K, {"acks": 1, "enable_idempotence": False},
                               "none", 1, False),
                 "sub": "kafkapython_consume", "spec": {"topic": TOPIC, "group": "golden-group-kp", "count": len(PY_RECORDS)},
                 "description": "kafka-python KafkaConsumer: subscribe, iterate all, commit, close"})
    runs.append({"name": "confluent-admin", "client": C, "sub": "confluent_admin", "spec": {},
                 "description": "confluent AdminClient create_topics(golden-admin, 3 partitions) + delete_topics"})
    runs.append({"name": "kafka-python-admin", "client": K, "sub": "kafkapython_admin", "spec": {},
                 "description": "kafka-python KafkaAdminClient create_topics(golden-admin, 3 partitions) + delete_topics"})
    return runs


CLIENT_KEY = {"kcat": "kcat", "confluent": "confluent", "kafkapython": "kafka-python"}


def run_client(run, port, log):
    if "cmd" in run:
        args, stdin = run["cmd"](port), run["stdin"]
    else:
        spec = dict(run["spec"], bootstrap="127.0.0.1:%d" % port)
        args, stdin = [sys.executable, os.path.abspath(__file__), "--client", run["sub"], json.dumps(spec)], ""
    log.write("$ %s\n" % " ".join(args))
    log.flush()
    p = subprocess.run(args, input=stdin, text=True, stdout=log, stderr=log, timeout=90)
    if p.returncode != 0:
        raise RuntimeError("run %s: client exited %d" % (run["name"], p.returncode))


def capture_run(run, raw_root, log):
    rdir = os.path.join(raw_root, run["name"])
    os.makedirs(rdir)
    parts = max(run.get("partitions", 1), run.get("pre", {}).get("partitions", 1))
    b = subprocess.Popen([sys.executable, BROKER, "--out", rdir, "--partitions", str(parts), "--topics", TOPIC],
                         stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        port = int(b.stdout.readline().split()[1])
        phases = []
        if "pre" in run:
            run_client(run["pre"], port, log)
            time.sleep(0.3)
            phases.append((run["pre"], len(read_frames(rdir))))
        run_client(run, port, log)
        time.sleep(0.5)
    finally:
        b.terminate()
        b.wait()
    frames = read_frames(rdir)
    # frames up to the boundary belong to "pre", the rest to the run itself
    out, start = [], 0
    for ph, end in phases:
        out += [(ph, f) for f in frames[start:end]]
        start = end
    out += [(run, f) for f in frames[start:]]
    return rdir, out


def read_frames(rdir):
    path = os.path.join(rdir, "frames.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(l) for l in f]


# ====================================================================== main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--keep-raw", help="keep every raw frame and broker log in this folder")
    ap.add_argument("--only", help="comma-separated run names (debugging)")
    ap.add_argument("--client", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.client:
        CLIENTS[a.client[0]](json.loads(a.client[1]))
        return

    versions = client_versions()
    print("clients:", json.dumps(versions), flush=True)
    raw_root = a.keep_raw or tempfile.mkdtemp(prefix="apus-capture-")
    if a.keep_raw:
        shutil.rmtree(raw_root, ignore_errors=True)
    os.makedirs(raw_root, exist_ok=True)
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.out):
        if f.endswith(".bin") or f == "manifest.json":
            os.remove(os.path.join(a.out, f))

    runs = build_runs()
    if a.only:
        runs = [r for r in runs if r["name"] in a.only.split(",")]
    manifest, seen, counters, failures = [], {}, {}, []
    log = open(os.path.join(raw_root, "clients.log"), "w")
    for run in runs:
        print("== run %s" % run["name"], flush=True)
        try:
            rdir, frames = capture_run(run, raw_root, log)
        except Exception as e:
            failures.append("%s: %s" % (run["name"], e))
            print("   FAILED: %s" % e, flush=True)
            continue
        # expected records, per (run, topic, partition), consumed in order by produce requests
        queues = {}
        for owner, fr in frames:
            key, ver = fr["apiKey"], fr["apiVersion"]
            with open(os.path.join(rdir, fr["file"]), "rb") as f:
                data = f.read()
            client = versions[CLIENT_KEY[owner["client"]]]
            entry = {"client": client, "api": API_NAMES.get(key, "api%d" % key), "apiKey": key, "apiVersion": ver, "correlationId": fr["correlationId"],
                     "clientId": fr["clientId"], "run": owner["name"],
                     "description": "%s request from run '%s': %s" % (API_NAMES.get(key, "api%d" % key),
                                                                     owner["name"], owner["description"])}
            for extra in ("clientSoftwareName", "clientSoftwareVersion", "headerTags", "bodyTags", "detail",
                          "handlerError", "parseWarning"):
                if fr.get(extra):
                    entry[extra] = fr[extra]
            if key == 0:
                txn, acks, timeout, topics = parse_produce(data)
                if acks != owner["acks"]:
                    failures.append("%s: acks %d != expected %d" % (owner["name"], acks, owner["acks"]))
                exp, batches_meta = [], []
                for tname, parts in topics:
                    for idx, batches in parts:
                        recs = [r for b in batches for r in b["records"]]
                        q = queues.setdefault((owner["name"], tname, idx),
                                              [r for r in owner["records"] if r.get("partition", 0) == idx])
                        want, q[:] = q[:len(recs)], q[len(recs):]
                        want = [{k: r[k] for k in ("key", "value", "headers")} for r in want]
                        got = [{k: r[k] for k in ("key", "value", "headers")} for r in recs]
                        if want != got:
                            failures.append("%s: decoded records differ from expected\n  want %s\n  got  %s"
                                            % (owner["name"], want, got))
                        for b in batches:
                            if not b["crcValid"]:
                                failures.append("%s: bad CRC" % owner["name"])
                            if b["compression"] != owner["compression"]:
                                failures.append("%s: compression %s != %s" % (owner["name"], b["compression"],
                                                                              owner["compression"]))
                            if (b["producerId"] >= 0) != owner["idempotent"]:
                                failures.append("%s: producerId %d but idempotent=%s" % (
                                    owner["name"], b["producerId"], owner["idempotent"]))
                            batches_meta.append({"topic": tname, "partition": idx,
                                                 **{k: v for k, v in b.items() if k != "records"}})
                        exp.append({"topic": tname, "partition": idx, "records": got})
                entry.update(acks=acks, timeoutMs=timeout, transactionalId=txn,
                             compression=owner["compression"], idempotent=owner["idempotent"],
                             expected=exp, batches=batches_meta)
                dedup_key = data
            else:
                dedup_key = data[:4] + b"\0\0\0\0" + data[8:]  # ignore correlation id
            if dedup_key in seen:
                continue
            api = API_NAMES.get(key, "api%d" % key)
            n = counters.get((api, ver), 0)
            counters[(api, ver)] = n + 1
            fname = "%s_request_v%d_%d.bin" % (api, ver, n)
            seen[dedup_key] = fname
            with open(os.path.join(a.out, fname), "wb") as f:
                f.write(data)
            manifest.append(dict({"file": fname}, **entry))
        for (rname, t, p), q in queues.items():
            if q:
                failures.append("%s: %d expected records never seen for %s/%d" % (rname, len(q), t, p))
        for owner in {id(o): o for o, _ in frames}.values():
            if "records" in owner and not any(k[0] == owner["name"] for k in queues):
                failures.append("%s: no produce request captured" % owner["name"])

    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(a.out, m["file"])) for m in manifest)
    print("wrote %d fixtures (%d bytes) to %s; raw frames in %s" % (len(manifest), total, a.out, raw_root))
    if failures:
        print("FAILURES:\n" + "\n".join(failures))
        sys.exit(1)
    if not a.keep_raw:
        shutil.rmtree(raw_root, ignore_errors=True)


if __name__ == "__main__":
    main()
