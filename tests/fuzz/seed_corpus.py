#!/usr/bin/env python3
"""seed_corpus.py - writes the seed corpora of the fuzz targets.

    tests/fuzz/seed_corpus.py [--cli build/session-codec]
        [--vectors tests/vectors] [--data tests/data]
        [--out tests/fuzz/corpus]

Seeds come from the SDK vectors in tests/vectors (JSON bodies in both
namings and their protobuf encodings, made with `session-codec encode
--lines --hex`), the node-made date and number tables in tests/data, and
hand-written edge cases. File names are seed-<sha1 prefix>, so re-running
is idempotent; crash-* reproducers are never touched. Keep the result
small (a few hundred files): libFuzzer grows its own working copy under
build/fuzz/.
"""
import argparse
import hashlib
import json
import os
import struct
import subprocess

ULID = "01JVGMGV4TSYS5N6F3J39YGB1T"
UUID = "0b5e0f6c-4a61-4e1b-9d47-2b0e4c1f8a33"
CROCK = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wt, payload):
    tag = varint(num << 3 | wt)
    if wt == 0:
        return tag + varint(payload)
    return tag + varint(len(payload)) + payload


def ulid_raw(s):
    n = 0
    for c in s:
        n = n * 32 + CROCK.index(c)
    return n.to_bytes(16, "big")


def uuid_raw(s):
    return bytes.fromhex(s.replace("-", ""))


def write(outdir, target, data):
    d = os.path.join(outdir, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def encode(cli, bodies, kind="update"):
    """Protobuf of each JSON body (None where the CLI refuses it)."""
    text = "".join(b.replace("\n", " ") + "\n" for b in bodies)
    r = subprocess.run([cli, "encode", "--lines", "--kind", kind],
                       input=text.encode(), capture_output=True)
    out = []
    for line in r.stdout.decode().splitlines():
        out.append(None if line.startswith("error") else
                   bytes.fromhex(line.strip()))
    return out


BAD_JSON = [
    "", " ", "{", "}", "[]", "null", "\"x\"", "{}", " {} ", "{} x",
    "{\"nope\":1}", "{\"_id\":\"a\",\"id\":\"b\"}", "{\"tags\":[1]}",
    "{\"tags\":[[]]}", "{\"billing\":{\"input_cost\":1}}",
    "{\"billing\":{\"input_cost\":1,\"output_cost\":2,\"total_cost\":3,"
    "\"x\":{}}}", "{\"duration\":1e400}", "{\"duration\":-0}",
    "{\"duration\":01}", "{\"duration\":1.}", "{\"duration\":.5}",
    "{\"duration\":NaN}", "{\"duration\":" + "1" * 80 + "}",
    "{\"duration\":0." + "0" * 70 + "1}",
    "{\"duration\":123456789012345678901234567890e-10}",
    "{\"started_at\":\"2025-01-01T00:00:00\"}",
    "{\"startedAt\":\"2025-01-01T00:00:00.123456789+14:00\"}",
    "{\"updated_at\":\"0000-01-01T00:00:00-00:01\"}",
    "{\"updated_at\":\"9999-12-31T23:59:59.999-01:00\"}",
    "{\"_id\":\"\\u0000\"}", "{\"_id\":\"\\ud83d\\ude00\"}",
    "{\"_id\":\"\\ud800\"}", "{\"a\\u0000b\":1}", "{\"_id\":\"\\/\"}",
    "{\"project_id\":null,\"projectId\":null}",
    "{\"projectId\":null,\"nope\":[1,{\"a\":[]}]}",
    "{\"tags\":[\"a\",\"b\"],\"contactIds\":[]}",
    "\ufeff{}", "{\"_id\":\"\x7f\u0080\u2028\"}",
    "{\n  \"_id\": \"x\",\n  \"tags\": [\n    \"a\"\n  ]\n}",
]

BAD_DATES = [
    "", "2025-01-01T00:00:00Z", "2025-01-01T00:00:00.1Z",
    "2025-01-01T00:00:00.123456789Z", "2025-01-01T00:00:00+01:00",
    "2025-01-01T00:00:00-0130", "2025-01-01T00:00:00+01",
    "2025-01-01T24:00:00Z", "2025-01-01T00:00:60Z", "2025-02-29T00:00:00Z",
    "2024-02-29T00:00:00Z", "0000-02-29T00:00:00Z", "1900-02-29T00:00:00Z",
    "0000-01-01T00:00:00+00:01", "9999-12-31T23:59:59.999-00:01",
    "2025-01-01t00:00:00z", "2025-01-01 00:00:00Z", "2025-13-01T00:00:00Z",
    "2025-01-01T00:00:00.Z", "+2025-01-01T00:00:00Z", "2025-1-01T00:00:00Z",
    "2025-01-01T00:00:00+23:59", "2025-01-01T00:00:00+24:00",
]

BAD_URI = [
    b"", b".", b"..", b"...", b"%", b"%2", b"%2F", b"%2f", b"%zz", b"a%",
    b"%C3%A9", b"%C3", b"%ED%A0%80", b"%00", b"%2E%2E", b"a b", b"\xff",
    b"\xc3\xa9", b"caf\xc3\xa9%20x", ULID.encode(), UUID.encode(),
    ULID.lower().encode(), UUID.upper().encode(), b"~!*'()-_.",
    b"%F0%9F%98%80", b"x" * 300,
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default="build/session-codec")
    ap.add_argument("--vectors", default="tests/vectors")
    ap.add_argument("--data", default="tests/data")
    ap.add_argument("--out", default="tests/fuzz/corpus")
    a = ap.parse_args()

    lines = []
    for name, take in (("sdk_wire.jsonl", 90), ("typical.jsonl", 12)):
        with open(os.path.join(a.vectors, name)) as f:
            lines += [json.loads(x) for x in f.read().splitlines()
                      if x][:take]

    # ---- json_parse: wire text, SDK form, edge cases
    for i, v in enumerate(lines):
        write(a.out, "json_parse", v["wire"].encode())
        if i % 4 == 0:
            write(a.out, "json_parse",
                  json.dumps(v["sdk"], separators=(",", ":"),
                             ensure_ascii=False).encode())
    for s in BAD_JSON:
        write(a.out, "json_parse", s.encode("utf-8", "surrogatepass"))

    # ---- pb_decode: the encodings of the vectors, and broken ones
    pbs = [p for p in encode(a.cli, [v["wire"] for v in lines]) if p]
    for p in pbs:
        write(a.out, "pb_decode", p)
    for p in pbs[:20]:
        if len(p) > 2:
            write(a.out, "pb_decode", p[:len(p) // 2])  # truncated
            flip = bytearray(p)
            flip[len(p) // 3] ^= 0x40
            write(a.out, "pb_decode", bytes(flip))
    for h in ("", "80", "0a05", "0a10" + "00" * 16, "4a0161" * 3,
              "78ffffffffffffffffff01", "9901" + "00" * 6 + "f87f",
              "3202" + "0802", "0800", "2001", "6001" + "7001",
              "a20100", "0a0a" + "00" * 10 + "6002", "7808"):
        write(a.out, "pb_decode", bytes.fromhex(h))

    # ---- envelope: Envelope, Batch, Ack, Error
    ids = [field(1, 2, ulid_raw(ULID)), field(3, 2, uuid_raw(UUID)),
           field(2, 2, b"device-7/session 1"), field(2, 2, b"\xc3\xa9")]
    envs = []
    for i, p in enumerate(pbs[:24]):
        env = ids[i % 4] + field(4, 0, 1000 + i) + field(5, 2, p)
        envs.append(env)
        write(a.out, "envelope", env)
    for k in (1, 2, 3, 8):
        write(a.out, "envelope",
              b"".join(field(1, 2, e) for e in envs[:k]))
    for h in ("0a001000", "1202696420012a00", "12012e20012a00",
              "12022e2e20012a00", "1a0f" + "00" * 15 + "20012a00",
              "1201ff20012a00", "2001", "0a03120178"):
        try:
            write(a.out, "envelope", bytes.fromhex(h))
        except ValueError:
            pass
    results = [field(1, 0, 7) + field(2, 0, 200),
               field(1, 0, 8) + field(2, 0, 429) + field(3, 0, 1500) +
               field(4, 2, b"slow down"),
               field(1, 0, 9) + field(2, 0, 400) +
               field(4, 2, b"billing.total_cost: expected a number")]
    write(a.out, "envelope", b"".join(field(1, 2, r) for r in results))
    write(a.out, "envelope", field(1, 2, field(1, 0, 1) +
                                   field(2, 0, 1 << 32)))
    write(a.out, "envelope", field(1, 0, 400) +
          field(2, 2, b"invalid_body") +
          field(3, 2, b"expected a string") + field(4, 2, b"tags[3]"))
    write(a.out, "envelope", field(1, 0, 0xFFFFFFFF) + field(2, 2, b""))

    # ---- date: node's toISOString table and edge cases
    with open(os.path.join(a.data, "js_dates.tsv")) as f:
        rows = [r.split("\t") for r in f.read().splitlines() if r]
    for ms, text in rows[::150]:
        write(a.out, "date", text.encode())
        write(a.out, "date", struct.pack("<q", int(ms)))
    for s in BAD_DATES:
        write(a.out, "date", s.encode())

    # ---- num: node's Number::toString table, 8 doubles per file
    with open(os.path.join(a.data, "js_numbers.tsv")) as f:
        bits = [int(r.split("\t")[0], 16)
                for r in f.read().splitlines() if r]
    step = max(1, len(bits) // 320)
    picked = bits[:40] + bits[40::step]
    for i in range(0, len(picked), 8):
        write(a.out, "num", b"".join(struct.pack("<Q", b)
                                     for b in picked[i:i + 8]))

    # ---- uri: session ids, their paths, broken escapes
    for v in lines[::4]:
        sid = v["session_id"].encode()
        write(a.out, "uri", sid)
        write(a.out, "uri", v["path"].split("/")[-1].encode())
    for s in BAD_URI:
        write(a.out, "uri", s)

    # ---- gateway: flags byte, six head lines, body (tests/fuzz/gateway.c)
    tok1, tok2 = b"fuzz-token-one-7f3a", b"fuzz-token-two-c91e"
    pb_ct, js_ct = b"application/x-protobuf", b"application/json"

    def req(method, path, ct=b"", accept=b"", auth=b"Bearer " + tok1,
            cl=b"", body=b"", flags=0):
        return (bytes([flags]) + b"\n".join(
            [method, path, ct, accept, auth, cl]) + b"\n" + body)

    for v, p in zip(lines[:16], pbs[:16]):
        path = v["path"].encode()
        write(a.out, "gateway", req(b"PATCH", path, pb_ct, pb_ct,
                                    cl=str(len(p)).encode(), body=p))
        write(a.out, "gateway", req(b"PATCH", path, js_ct + b"; charset=utf-8",
                                    auth=b"Bearer " + tok2,
                                    body=v["wire"].encode()))
    for k in (1, 3, 17):
        batch = b"".join(field(1, 2, e) for e in (envs * 2)[:k])
        write(a.out, "gateway", req(b"POST", b"/v1/updates", pb_ct,
                                    body=batch))
    sid = ("/v2/traces/sessions/" + ULID).encode()
    for r in (req(b"GET", b"/healthz"), req(b"POST", b"/metrics"),
              req(b"PATCH", b"/v2/traces/sessions/", pb_ct),
              req(b"PATCH", b"/v2/traces/sessions/a/b", pb_ct),
              req(b"PATCH", b"/v2/traces/sessions/%2E%2E", pb_ct),
              req(b"PATCH", b"/v2/traces/sessions/%zz", pb_ct),
              req(b"PATCH", b"/v2/traces/sessions/%C3", pb_ct),
              req(b"PATCH", sid, b"text/plain"),
              req(b"PATCH", sid, pb_ct, auth=b""),
              req(b"PATCH", sid, pb_ct, auth=b"Basic eDp5"),
              req(b"PATCH", sid, pb_ct, auth=b"Bearer nope"),
              req(b"PATCH", sid, pb_ct, flags=1, body=b"\x0a\x01"),
              req(b"PATCH", sid, pb_ct, cl=b"99999999999999999999999"),
              req(b"PATCH", sid, pb_ct, cl=b"-1"),
              req(b"PATCH", sid, pb_ct, cl=b"12", flags=2),
              req(b"PATCH", sid, pb_ct, flags=4),
              req(b"PATCH", sid, pb_ct, flags=8),
              req(b"PUT", sid, pb_ct),
              req(b"PATCH", sid, js_ct, body=b'{"tags":[1]}'),
              req(b"PATCH", sid, js_ct, body=b'{"\xff":1}'),
              req(b"POST", b"/v1/updates", js_ct),
              req(b"POST", b"/v1/updates", pb_ct, body=b"\x0a\x03\x12\x01.")):
        write(a.out, "gateway", r)

    # ---- answer: status, key length, key, body (tests/fuzz/answer.c)
    def ans(status, key, body):
        return (struct.pack(">H", status - 100) + bytes([len(key)]) + key +
                body)

    key = b"sk-orq-KEY-0123456789"
    for v in lines[:12]:
        write(a.out, "answer", ans(200, key, v["wire"].encode()))
    for st, body in ((404, b'{"message":"Session not found"}'),
                     (401, b'{"code":"unauthorized","message":"invalid key ' +
                      key + b'"}'),
                     (422, b'{"message":"bad","code":"x","extra":1}'),
                     (500, b'<html>oops ' + key + key + b'</html>'),
                     (503, b"120"), (429, b" 7\t"), (503, b"99999999999"),
                     (503, b"Wed, 21 Oct 2015 07:28:00 GMT"),
                     (503, b"Sun, 06 Nov 2094 08:49:37 GMT"),
                     (302, b'{"message":"moved"}'), (204, b""),
                     (200, b'{"_id":"01JVGMGV4TSYS5N6F3J39YGB1T",'
                      b'"tags":["a"],"unknown":{"x":[1,2]}}')):
        write(a.out, "answer", ans(st, key, body))
    write(a.out, "answer", ans(400, b"**", b"a**b***c"))
    write(a.out, "answer", ans(400, b"", b"nothing to scrub"))

    # ---- coap: flags byte, then a CoAP datagram (tests/fuzz/coap.c)
    def opt_hdr(delta, length):
        def nib(v):
            if v < 13:
                return v, b""
            if v < 269:
                return 13, bytes([v - 13])
            return 14, struct.pack(">H", v - 269)
        dn, de = nib(delta)
        ln, le = nib(length)
        return bytes([dn << 4 | ln]) + de + le

    def coap(code, opts, payload=b"", typ=0, mid=0x1234, tok=b"\x07",
             flags=0):
        out = bytes([0x40 | typ << 4 | len(tok), code]) + \
            struct.pack(">H", mid) + tok
        last = 0
        for num, val in sorted(opts, key=lambda o: o[0]):
            out += opt_hdr(num - last, len(val)) + val
            last = num
        if payload:
            out += b"\xff" + payload
        return bytes([flags]) + out

    u, b = (11, b"u"), (11, b"b")
    for e in envs[:12]:
        write(a.out, "coap", coap(0x02, [u], e))
        write(a.out, "coap", coap(0x02, [u, (12, b"\x2a")], e, typ=1))
    for k in (1, 3, 17, 41):
        batch = b"".join(field(1, 2, e) for e in (envs * 4)[:k])
        write(a.out, "coap", coap(0x02, [b], batch))
    big = b"".join(field(1, 2, e) for e in envs[:8])
    write(a.out, "coap", coap(0x02, [b, (27, bytes([0x08 | 2])),
                                     (60, struct.pack(">H", len(big)))],
                              big[:64]))
    write(a.out, "coap", coap(0x02, [b, (27, bytes([0x10 | 2]))], big[:64]))
    write(a.out, "coap", coap(0x02, [b, (27, bytes([0x0f]))], big[:16]))
    write(a.out, "coap", coap(0x02, [u, (27, bytes([0x02]))], envs[0]))
    for opts, payload, flags in (
            ([(11, b"x")], envs[0], 0), ([], envs[0], 0),
            ([u, (11, b"v")], envs[0], 0), ([u, (1, b"e")], envs[0], 0),
            ([u, (15, b"a=1")], envs[0], 0), ([u, (12, b"\x32")], envs[0], 0),
            ([u, (17, b"\x32")], envs[0], 0), ([u, (3, b"gw"), (7, b"\x16\x33")],
                                            envs[0], 0),
            ([u], envs[0], 1), ([u], envs[0], 2), ([u], envs[0], 4),
            ([u], envs[0], 8), ([u], b"", 0), ([u], b"\xff\xff", 0),
            ([u], field(2, 2, b"s") + field(5, 2, pbs[0]), 0),
            ([u, (60, b"\xff\xff\xff")], envs[0], 0),
            ([u], envs[0], 0x10), ([u], envs[0], 0x60),
            ([u], envs[0], 0xa0), ([u], envs[0], 0xe0),
            ([u], envs[0], 0xf0)):
        write(a.out, "coap", coap(0x02, opts, payload, flags=flags))
    write(a.out, "coap", coap(0x01, [u]))            # GET
    write(a.out, "coap", coap(0x45, [u], b"x"))      # a response
    write(a.out, "coap", coap(0x00, [], tok=b""))    # ping
    write(a.out, "coap", bytes([0]) + b"\x4f\x02\x00\x01")  # token 15
    write(a.out, "coap", bytes([0]) + b"\x40\x02\x00\x01\xf0")


if __name__ == "__main__":
    main()
