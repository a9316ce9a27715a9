#!/usr/bin/env python3
"""Minimal fake Kafka broker used to capture golden request fixtures.

It is NOT a broker: it accepts connections on 127.0.0.1, records every request
frame it receives (without the 4-byte size prefix) and answers just well enough
that real clients (librdkafka via kcat / confluent-kafka, kafka-python) go on
producing, consuming and committing.

Single broker, node id 0, host 127.0.0.1, its own port. Every topic a client
asks about exists with --partitions partitions (leader 0). Produced batches are
kept in memory (base offset rewritten in place, as a real broker does) and
served back by Fetch, so a consumer reads what was produced.

Responses are encoded by hand with `struct`, following the JSON message specs in
shared/kafka-protocol. All advertised versions are non-flexible except
ApiVersions v3 (whose response header is still v0).

Output (in --out DIR):
  NNNNN.bin      one file per received request frame, in arrival order
  frames.jsonl   one JSON line per frame: seq, conn, apiKey, apiVersion,
                 correlationId, clientId, file, plus parsed details for some APIs
Usage:
  fake_broker.py --out DIR [--port 0] [--partitions 1] [--topics golden]
Prints "PORT <n>" on stdout once listening. Stops on SIGTERM/SIGINT.
"""
import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import uuid

# api key -> (name, min, max) advertised in ApiVersions
SUPPORTED = {
    0: ("Produce", 0, 8),
    1: ("Fetch", 4, 11),
    2: ("ListOffsets", 0, 5),
    3: ("Metadata", 0, 8),
    8: ("OffsetCommit", 0, 7),
    9: ("OffsetFetch", 0, 5),
    10: ("FindCoordinator", 0, 2),
    11: ("JoinGroup", 0, 5),
    12: ("Heartbeat", 0, 3),
    13: ("LeaveGroup", 0, 1),
    14: ("SyncGroup", 0, 3),
    18: ("ApiVersions", 0, 3),
    19: ("CreateTopics", 0, 4),
    20: ("DeleteTopics", 0, 3),
    22: ("InitProducerId", 0, 1),
}

NODE_ID = 0
HOST = "127.0.0.1"
INT32_MIN = -2147483648

# error codes
NONE = 0
UNSUPPORTED_VERSION = 35
MEMBER_ID_REQUIRED = 79


# ---------------------------------------------------------------- encoding
def i8(v): return struct.pack(">b", v)
def i16(v): return struct.pack(">h", v)
def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)
def boolean(v): return b"\x01" if v else b"\x00"


def string(s):
    b = s.encode("utf-8")
    return i16(len(b)) + b


def nstring(s):
    return i16(-1) if s is None else string(s)


def nbytes(b):
    return i32(-1) if b is None else i32(len(b)) + b


def array(items, enc):
    return i32(len(items)) + b"".join(enc(x) for x in items)


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def compact_array(items, enc):
    return uvarint(len(items) + 1) + b"".join(enc(x) for x in items)


EMPTY_TAGS = b"\x00"


# ---------------------------------------------------------------- decoding
class Reader:
    def __init__(self, data, pos=0):
        self.d = data
        self.p = pos

    def _take(self, fmt, n):
        v = struct.unpack_from(fmt, self.d, self.p)[0]
        self.p += n
        return v

    def i8(self): return self._take(">b", 1)
    def i16(self): return self._take(">h", 2)
    def i32(self): return self._take(">i", 4)
    def i64(self): return self._take(">q", 8)
    def boolean(self): return self._take(">b", 1) != 0

    def nstring(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.d[self.p:self.p + n].decode("utf-8", "replace")
        self.p += n
        return s

    string = nstring

    def nbytes(self):
        n = self.i32()
        if n < 0:
            return None
        b = self.d[self.p:self.p + n]
        self.p += n
        return bytes(b)

    def array(self, dec):
        n = self.i32()
        if n < 0:
            return None
        return [dec(self) for _ in range(n)]

    def uvarint(self):
        shift = 0
        out = 0
        while True:
            b = self.d[self.p]
            self.p += 1
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def compact_string(self):
        n = self.uvarint() - 1
        if n < 0:
            return None
        s = self.d[self.p:self.p + n].decode("utf-8", "replace")
        self.p += n
        return s

    def tagged_fields(self):
        tags = []
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            size = self.uvarint()
            tags.append((tag, self.d[self.p:self.p + size].hex()))
            self.p += size
        return tags


# ---------------------------------------------------------------- state
class State:
    def __init__(self, partitions, topics):
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.partitions = partitions
        self.default_topics = topics
        self.known_topics = list(topics)
        self.logs = {}       # (topic, partition) -> list of (base_offset, count, bytes)
        self.leo = {}        # (topic, partition) -> next offset
        self.committed = {}  # (group, topic, partition) -> (offset, metadata)
        self.groups = {}     # group -> dict(generation, members, protocol, assignments)
        self.next_pid = 1000

    def note_topic(self, t):
        if t not in self.known_topics:
            self.known_topics.append(t)


def split_batches(records):
    """Yield (offset_in_records, length) of each RecordBatch in a records blob."""
    pos = 0
    while pos + 12 <= len(records):
        (batch_len,) = struct.unpack_from(">i", records, pos + 8)
        total = 12 + batch_len
        if pos + total > len(records):
            break
        yield pos, total
        pos += total


# ---------------------------------------------------------------- handlers
class Handler:
    def __init__(self, state, out_dir, conn_id, port, seq_counter, log_lock, verbose):
        self.st = state
        self.out = out_dir
        self.conn = conn_id
        self.port = port
        self.seq = seq_counter
        self.log_lock = log_lock
        self.verbose = verbose

    def record(self, frame, info):
        with self.log_lock:
            n = self.seq[0]
            self.seq[0] += 1
            fname = "%05d.bin" % n
            with open(os.path.join(self.out, fname), "wb") as f:
                f.write(frame)
            info = dict(info, seq=n, conn=self.conn, file=fname, size=len(frame), time=time.time())
            with open(os.path.join(self.out, "frames.jsonl"), "a") as f:
                f.write(json.dumps(info) + "\n")
        if self.verbose:
            print("conn%d #%d %s v%d corr=%d client=%s %s" % (
                self.conn, n, SUPPORTED.get(info["apiKey"], ("?",))[0], info["apiVersion"],
                info["correlationId"], info["clientId"],
                {k: v for k, v in info.items() if k in ("detail",)}), file=sys.stderr, flush=True)

    def handle(self, frame):
        """Returns response bytes (without size prefix), None for no response,
        or raises ConnectionAbortedError to close the connection."""
        r = Reader(frame)
        key, ver, corr = r.i16(), r.i16(), r.i32()
        client_id = r.nstring()
        info = {"apiKey": key, "apiVersion": ver, "correlationId": corr, "clientId": client_id}
        flexible_header = key == 18 and ver >= 3
        if flexible_header:
            info["headerTags"] = r.tagged_fields()
        body = None
        try:
            if key not in SUPPORTED:
                info["detail"] = "unsupported api key; closing"
                self.record(frame, info)
                raise ConnectionAbortedError
            name, lo, hi = SUPPORTED[key]
            if key == 18:
                body = self.api_versions(r, ver, info)
            elif not (lo <= ver <= hi):
                info["detail"] = "unsupported version; closing"
                self.record(frame, info)
                raise ConnectionAbortedError
            else:
                body = getattr(self, "h_" + name)(r, ver, info)
                if r.p != len(frame) and "parseWarning" not in info:
                    info["parseWarning"] = "parsed %d of %d bytes" % (r.p, len(frame))
        except ConnectionAbortedError:
            raise
        except Exception as e:  # keep capturing even if a handler is wrong
            info["handlerError"] = repr(e)
            self.record(frame, info)
            raise ConnectionAbortedError
        self.record(frame, info)
        if body is None:
            return None
        return i32(corr) + body  # response header v0 for everything we answer

    # -- ApiVersions (18): v0-3; v3 body is flexible, header always v0
    def api_versions(self, r, ver, info):
        keys = sorted(SUPPORTED.items())
        if ver > 3:
            info["detail"] = "unsupported ApiVersions version -> error 35 with v0 body"
            return i16(UNSUPPORTED_VERSION) + array(keys, lambda kv: i16(kv[0]) + i16(kv[1][1]) + i16(kv[1][2]))
        if ver >= 3:
            info["clientSoftwareName"] = r.compact_string()
            info["clientSoftwareVersion"] = r.compact_string()
            info["bodyTags"] = r.tagged_fields()
            return (i16(NONE)
                    + compact_array(keys, lambda kv: i16(kv[0]) + i16(kv[1][1]) + i16(kv[1][2]) + EMPTY_TAGS)
                    + i32(0) + EMPTY_TAGS)
        body = i16(NONE) + array(keys, lambda kv: i16(kv[0]) + i16(kv[1][1]) + i16(kv[1][2]))
        if ver >= 1:
            body += i32(0)
        return body

    # -- Metadata (3): v0-8
    def h_Metadata(self, r, ver, info):
        topics = r.array(lambda r: r.string())
        if ver >= 4:
            info["allowAutoTopicCreation"] = r.boolean()
        if ver >= 8:
            r.boolean()
            r.boolean()
        info["topics"] = topics
        st = self.st
        with st.lock:
            if topics is None or (ver == 0 and topics == []):
                names = list(st.known_topics)
            else:
                for t in topics:
                    st.note_topic(t)
                names = topics
        body = b""
        if ver >= 3:
            body += i32(0)

        def broker(_):
            b = i32(NODE_ID) + string(HOST) + i32(self.port)
            if ver >= 1:
                b += nstring(None)
            return b
        body += array([0], broker)
        if ver >= 2:
            body += nstring("apus-fake-cluster")
        if ver >= 1:
            body += i32(NODE_ID)

        def partition(p):
            b = i16(NONE) + i32(p) + i32(NODE_ID)
            if ver >= 7:
                b += i32(0)
            b += array([NODE_ID], i32) + array([NODE_ID], i32)
            if ver >= 5:
                b += array([], i32)
            return b

        def topic(t):
            b = i16(NONE) + string(t)
            if ver >= 1:
                b += boolean(False)
            b += array(list(range(st.partitions)), partition)
            if ver >= 8:
                b += i32(INT32_MIN)
            return b
        body += array(names, topic)
        if ver >= 8:
            body += i32(INT32_MIN)
        return body

    # -- Produce (0): v3-8 (v0-2 parsed too)
    def h_Produce(self, r, ver, info):
        txn = r.nstring() if ver >= 3 else None
        acks = r.i16()
        timeout = r.i32()
        info.update(transactionalId=txn, acks=acks, timeoutMs=timeout)

        def part(r):
            return (r.i32(), r.nbytes())

        def topic(r):
            return (r.string(), r.array(part))
        data = r.array(topic)
        st = self.st
        results = []
        detail = []
        with st.cond:
            for tname, parts in data:
                st.note_topic(tname)
                pres = []
                for idx, records in parts:
                    tp = (tname, idx)
                    base = st.leo.get(tp, 0)
                    batches = []
                    for pos, length in split_batches(records or b""):
                        b = bytearray(records[pos:pos + length])
                        off = st.leo.get(tp, 0)
                        magic = b[16]
                        count = struct.unpack_from(">i", b, 23)[0] + 1 if magic == 2 else 1
                        struct.pack_into(">q", b, 0, off)  # not covered by the CRC
                        st.logs.setdefault(tp, []).append((off, count, bytes(b)))
                        st.leo[tp] = off + count
                        batches.append({"magic": magic, "count": count,
                                        "attributes": struct.unpack_from(">h", b, 21)[0] if magic == 2 else None,
                                        "bytes": length})
                    detail.append({"topic": tname, "partition": idx, "batches": batches})
                    pres.append((idx, base))
                results.append((tname, pres))
            st.cond.notify_all()
        info["produce"] = detail
        if acks == 0:
            return None

        def pr(p):
            idx, base = p
            b = i32(idx) + i16(NONE) + i64(base)
            if ver >= 2:
                b += i64(-1)
            if ver >= 5:
                b += i64(0)
            if ver >= 8:
                b += array([], lambda x: b"") + nstring(None)
            return b
        body = array(results, lambda t: string(t[0]) + array(t[1], pr))
        if ver >= 1:
            body += i32(0)
        return body

    # -- InitProducerId (22): v0-1
    def h_InitProducerId(self, r, ver, info):
        info["transactionalId"] = r.nstring()
        info["transactionTimeoutMs"] = r.i32()
        with self.st.lock:
            pid = self.st.next_pid
            self.st.next_pid += 1
        return i32(0) + i16(NONE) + i64(pid) + i16(0)

    # -- ListOffsets (2): v0-5
    def h_ListOffsets(self, r, ver, info):
        r.i32()
        if ver >= 2:
            r.i8()

        def part(r):
            idx = r.i32()
            if ver >= 4:
                r.i32()
            ts = r.i64()
            if ver == 0:
                r.i32()
            return (idx, ts)
        topics = r.array(lambda r: (r.string(), r.array(part)))
        info["topics"] = topics
        st = self.st

        def pr(p):
            idx, ts, off = p
            b = i32(idx) + i16(NONE)
            if ver == 0:
                return b + array([off], i64)
            b += i64(-1) + i64(off)
            if ver >= 4:
                b += i32(0)
            return b
        out = []
        with st.lock:
            for t, parts in topics:
                out.append((t, [(i, ts, st.leo.get((t, i), 0) if ts == -1 else 0) for i, ts in parts]))
        body = i32(0) if ver >= 2 else b""
        return body + array(out, lambda t: string(t[0]) + array(t[1], pr))

    # -- Fetch (1): v4-11
    def h_Fetch(self, r, ver, info):
        r.i32()
        max_wait = r.i32()
        r.i32()
        if ver >= 3:
            r.i32()
        if ver >= 4:
            r.i8()
        if ver >= 7:
            r.i32()
            r.i32()

        def part(r):
            idx = r.i32()
            if ver >= 9:
                r.i32()
            off = r.i64()
            if ver >= 5:
                r.i64()
            r.i32()
            return (idx, off)
        topics = r.array(lambda r: (r.string(), r.array(part)))
        if ver >= 7:
            r.array(lambda r: (r.string(), r.array(lambda r: r.i32())))
        if ver >= 11:
            r.string()
        info["topics"] = topics
        st = self.st

        def collect():
            res, have = [], False
            for t, parts in topics:
                pl = []
                for idx, off in parts:
                    tp = (t, idx)
                    blobs = [b for (base, cnt, b) in st.logs.get(tp, []) if base + cnt > off]
                    have = have or bool(blobs)
                    pl.append((idx, st.leo.get(tp, 0), b"".join(blobs)))
                res.append((t, pl))
            return res, have
        deadline = time.time() + min(max_wait, 500) / 1000.0
        with st.cond:
            res, have = collect()
            while not have and time.time() < deadline:
                st.cond.wait(max(0.0, deadline - time.time()))
                res, have = collect()

        def pr(p):
            idx, hw, blob = p
            b = i32(idx) + i16(NONE) + i64(hw)
            if ver >= 4:
                b += i64(hw)
            if ver >= 5:
                b += i64(0)
            if ver >= 4:
                b += i32(-1)  # aborted_transactions: null
            if ver >= 11:
                b += i32(-1)
            return b + nbytes(blob)
        body = i32(0)
        if ver >= 7:
            body += i16(NONE) + i32(0)
        return body + array(res, lambda t: string(t[0]) + array(t[1], pr))

    # -- FindCoordinator (10): v0-2
    def h_FindCoordinator(self, r, ver, info):
        info["key"] = r.string()
        if ver >= 1:
            info["keyType"] = r.i8()
        body = b""
        if ver >= 1:
            body += i32(0)
        body += i16(NONE)
        if ver >= 1:
            body += nstring(None)
        return body + i32(NODE_ID) + string(HOST) + i32(self.port)

    # -- JoinGroup (11): v0-5
    def h_JoinGroup(self, r, ver, info):
        group = r.string()
        r.i32()
        if ver >= 1:
            r.i32()
        member = r.string()
        instance = r.nstring() if ver >= 5 else None
        ptype = r.string()
        protocols = r.array(lambda r: (r.string(), r.nbytes()))
        info.update(groupId=group, memberId=member, protocolType=ptype,
                    protocols=[p[0] for p in protocols])
        st = self.st
        body = i32(0) if ver >= 2 else b""
        if member == "" and ver >= 4:
            new_id = "%s-%s" % (info["clientId"] or "member", uuid.uuid4())
            body += i16(MEMBER_ID_REQUIRED) + i32(-1) + string("") + string("") + string(new_id) + array([], lambda x: b"")
            return body
        if member == "":
            member = "%s-%s" % (info["clientId"] or "member", uuid.uuid4())
        with st.lock:
            g = st.groups.setdefault(group, {"generation": 0, "assignments": {}})
            g["generation"] += 1
            g["members"] = [(member, instance, protocols[0][1])]
            gen = g["generation"]
        body += i16(NONE) + i32(gen) + string(protocols[0][0]) + string(member) + string(member)

        def mem(m):
            b = string(m[0])
            if ver >= 5:
                b += nstring(m[1])
            return b + nbytes(m[2])
        return body + array([(member, instance, protocols[0][1])], mem)

    # -- SyncGroup (14): v0-3
    def h_SyncGroup(self, r, ver, info):
        group = r.string()
        gen = r.i32()
        member = r.string()
        if ver >= 3:
            r.nstring()
        assignments = r.array(lambda r: (r.string(), r.nbytes()))
        info.update(groupId=group, generationId=gen, memberId=member)
        with self.st.lock:
            g = self.st.groups.setdefault(group, {"generation": gen, "assignments": {}})
            for m, a in assignments:
                g["assignments"][m] = a
            mine = g["assignments"].get(member, b"")
        body = i32(0) if ver >= 1 else b""
        return body + i16(NONE) + nbytes(mine)

    # -- Heartbeat (12): v0-3
    def h_Heartbeat(self, r, ver, info):
        info["groupId"] = r.string()
        r.i32()
        r.string()
        if ver >= 3:
            r.nstring()
        return (i32(0) if ver >= 1 else b"") + i16(NONE)

    # -- LeaveGroup (13): v0-1
    def h_LeaveGroup(self, r, ver, info):
        info["groupId"] = r.string()
        info["memberId"] = r.string()
        return (i32(0) if ver >= 1 else b"") + i16(NONE)

    # -- OffsetCommit (8): v0-7
    def h_OffsetCommit(self, r, ver, info):
        group = r.string()
        if ver >= 1:
            r.i32()
            r.string()
        if ver >= 7:
            r.nstring()
        if 2 <= ver <= 4:
            r.i64()

        def part(r):
            idx = r.i32()
            off = r.i64()
            if ver >= 6:
                r.i32()
            if ver == 1:
                r.i64()
            md = r.nstring()
            return (idx, off, md)
        topics = r.array(lambda r: (r.string(), r.array(part)))
        info.update(groupId=group, topics=topics)
        with self.st.lock:
            for t, parts in topics:
                for idx, off, md in parts:
                    self.st.committed[(group, t, idx)] = (off, md)
        body = i32(0) if ver >= 3 else b""
        return body + array(topics, lambda t: string(t[0]) + array(t[1], lambda p: i32(p[0]) + i16(NONE)))

    # -- OffsetFetch (9): v0-5
    def h_OffsetFetch(self, r, ver, info):
        group = r.string()
        topics = r.array(lambda r: (r.string(), r.array(lambda r: r.i32())))
        info.update(groupId=group, topics=topics)
        st = self.st
        with st.lock:
            if topics is None:
                topics = {}
                for (g, t, p) in st.committed:
                    if g == group:
                        topics.setdefault(t, []).append(p)
                topics = sorted(topics.items())

            def pr(tp):
                t, idx = tp
                off, md = st.committed.get((group, t, idx), (-1, ""))
                b = i32(idx) + i64(off)
                if ver >= 5:
                    b += i32(-1)
                return b + nstring(md) + i16(NONE)
            body = i32(0) if ver >= 3 else b""
            body += array(topics, lambda t: string(t[0]) + array([(t[0], p) for p in t[1]], pr))
        if ver >= 2:
            body += i16(NONE)
        return body

    # -- CreateTopics (19): v0-4
    def h_CreateTopics(self, r, ver, info):
        def topic(r):
            name = r.string()
            r.i32()
            r.i16()
            r.array(lambda r: (r.i32(), r.array(lambda r: r.i32())))
            r.array(lambda r: (r.string(), r.nstring()))
            return name
        names = r.array(topic)
        r.i32()
        if ver >= 1:
            r.boolean()
        info["topics"] = names
        with self.st.lock:
            for n in names:
                self.st.note_topic(n)
        body = i32(0) if ver >= 2 else b""
        return body + array(names, lambda n: string(n) + i16(NONE) + (nstring(None) if ver >= 1 else b""))

    # -- DeleteTopics (20): v0-3
    def h_DeleteTopics(self, r, ver, info):
        names = r.array(lambda r: r.string())
        r.i32()
        info["topics"] = names
        body = i32(0) if ver >= 1 else b""
        return body + array(names, lambda n: string(n) + i16(NONE))


# ---------------------------------------------------------------- server
def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def serve_conn(sock, handler):
    try:
        while True:
            hdr = recv_exact(sock, 4)
            if hdr is None:
                return
            (size,) = struct.unpack(">i", hdr)
            frame = recv_exact(sock, size)
            if frame is None:
                return
            try:
                resp = handler.handle(frame)
            except ConnectionAbortedError:
                return
            if resp is not None:
                sock.sendall(i32(len(resp)) + resp)
    except OSError:
        pass
    finally:
        sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--topics", default="golden")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    state = State(a.partitions, [t for t in a.topics.split(",") if t])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST, a.port))
    srv.listen(16)
    port = srv.getsockname()[1]
    print("PORT %d" % port, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    seq = [0]
    log_lock = threading.Lock()
    conn_id = 0
    while True:
        try:
            s, _ = srv.accept()
        except KeyboardInterrupt:
            return
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        h = Handler(state, a.out, conn_id, port, seq, log_lock, a.verbose)
        conn_id += 1
        threading.Thread(target=serve_conn, args=(s, h), daemon=True).start()


if __name__ == "__main__":
    main()
