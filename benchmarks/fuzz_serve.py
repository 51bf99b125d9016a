"""A seeded fuzz campaign against a real `threadline serve`: malformed and hostile OTLP/HTTP
(protobuf, JSON, gzip), OTLP/gRPC and query API requests, with a valid export every 50 cases.

    python benchmarks/fuzz_serve.py [--cases 10000] [--seed 16] [--spans 100000] [--db PATH]

The server runs in a child process over a DuckDB file holding --spans realistic spans (made once
and copied). At the end it is killed with SIGKILL and the file opened again: every span of every
acknowledged valid export must be there. Prints the answers by transport and status, the answers
outside the documented statuses, the unanswered calls, the acknowledged spans lost, and the
server's peak RSS over its RSS when ready. Exits 1 when any of the last three is not zero or
the RSS rose more than 1 GB.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.parse
from typing import Any

import grpc
import httpx

sys.path.insert(0, os.path.dirname(__file__))

from serve_data import deep_attribute, make_request

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PB = "application/x-protobuf"
JSON = "application/json"
# what `threadline serve` documents: anything else is a defect
HTTP_DOCUMENTED = {200, 303, 400, 401, 403, 404, 405, 413, 415, 503}
GRPC_DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # over the message size limit
    grpc.StatusCode.UNAVAILABLE,
}
VALID_EVERY = 50
RSS_BUDGET_KIB = 1024 * 1024


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# ------------------------------------------------------------------------------ inputs


class Inputs:
    """Seeded generators of hostile requests."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.small = [
            make_request(rng.randint(1, 40), seed=s).SerializeToString() for s in range(8)
        ]
        self.large = [make_request(300, seed=s).SerializeToString() for s in range(3)]
        self.special = self._special()
        self.bomb = gzip.compress(b"\0" * (64 << 20), 9)  # 64 MiB of zeros, about 64 KiB
        doc = {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "fz"}}]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "ab" * 16,
                                    "spanId": "cd" * 8,
                                    "name": "op",
                                    "startTimeUnixNano": "1700000000000000000",
                                    "endTimeUnixNano": "1700000000100000000",
                                    "attributes": [
                                        {"key": "k", "value": {"stringValue": "v"}},
                                        {"key": "n", "value": {"intValue": "3"}},
                                    ],
                                }
                            ]
                        }
                    ],
                }
            ]
        }
        self.json_doc = doc

    def _special(self) -> list[bytes]:
        out = []
        for depth in (40, 49, 64, 80):
            req = make_request(300, seed=9)
            deep_attribute(depth)(req.resource_spans[0].scope_spans[0].spans[2])
            out.append(req.SerializeToString())
        for field, value in (("start_time_unix_nano", 1 << 63), ("end_time_unix_nano", 2**64 - 1)):
            req = make_request(300, seed=10)
            setattr(req.resource_spans[0].scope_spans[0].spans[3], field, value)
            out.append(req.SerializeToString())
        return out

    def damaged(self, body: bytes) -> bytes:
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(max(1, len(body)))
            kind = rng.choice(["overwrite", "insert", "cut", "varint"])
            data = rng.randbytes(rng.randint(1, 8))
            if kind == "overwrite":
                body = body[:at] + data + body[at + len(data) :]
            elif kind == "insert":
                body = body[:at] + data + body[at:]
            elif kind == "cut":
                body = body[:at]
            else:  # a length or number field made huge
                body = body[:at] + bytes.fromhex("ffffffffffffffffff01") + body[at + 1 :]
        return body

    def protobuf(self) -> bytes:
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            return self.damaged(rng.choice(self.small))
        if r < 0.65:
            return self.damaged(rng.choice(self.large))
        if r < 0.8:
            return rng.choice(self.special)
        if r < 0.9:
            return rng.randbytes(rng.randint(0, 4096))
        return rng.choice(self.small)

    def hostile_text(self) -> Any:
        return self.rng.choice(
            [
                "\ud800",
                "a\udfffb",
                "ü",
                "\x00",
                "A" * 5000,
                "€==",
                "9" * 400,
                str(2**63),
                str(2**64),
                -1,
                1e308,
                True,
                None,
                [],
                {},
                [[[[]]]],
                "NaN",
                "Infinity",
            ]
        )

    def json_body(self) -> bytes:
        rng = self.rng
        doc = json.loads(json.dumps(self.json_doc))
        span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        r = rng.random()
        if r < 0.5:
            target = rng.choice(
                [
                    (span, "name"),
                    (span, "traceId"),
                    (span, "spanId"),
                    (span, "startTimeUnixNano"),
                    (span, "endTimeUnixNano"),
                    (span, "kind"),
                    (span["attributes"][0], "key"),
                    (span["attributes"][0]["value"], "stringValue"),
                    (span["attributes"][1]["value"], "intValue"),
                    (doc["resourceSpans"][0], "schemaUrl"),
                ]
            )
            target[0][target[1]] = self.hostile_text()
        elif r < 0.6:
            span["attributes"][0]["value"] = {"bytesValue": rng.choice(["ü==", "AAA\u00e9", "@@"])}
        elif r < 0.7:
            span["attributes"][0]["value"] = "DEEP"
        text = json.dumps(doc)
        if '"DEEP"' in text:  # nested AnyValues, written as text (json.dumps recurses)
            depth = rng.choice([10, 63, 64, 65, 500, 5000])
            deep = '{"arrayValue":{"values":[' * depth + '{"stringValue":"x"}' + "]}}" * depth
            text = text.replace('"DEEP"', deep)
        if rng.random() < 0.25:  # damage the text itself
            at = rng.randrange(len(text))
            text = (
                text[:at] + rng.choice(["[" * 3000, "\\ud800", "}", '"', "\x00", "é"]) + text[at:]
            )
        return text.encode("utf-8", "surrogatepass")

    def query(self) -> tuple[str, dict | list]:
        rng = self.rng
        big = rng.choice(["1000000000000", "1501", "-5", "0", "abc", "9" * 40, "20"])
        hostile = lambda: str(self.hostile_text())  # noqa: E731
        tags = rng.choice(
            [
                '{"k": "\\ud800"}',
                "[" * 1000 + "]" * 1000,
                '{"a":' * 1000 + "1" + "}" * 1000,
                '{"http.status_code": "200"}',
                "not json",
                '"just a string"',
            ]
        )
        filt = rng.choice(
            ["k>nan", "k>inf", "k>1e999", "k<=-1e308", "span:x=1 OR y", '"unterminated', "=", "!k"]
        )
        duration = rng.choice(["9" * 400 + "h", "1.5s", "250ms", "1e9h", "h", "-1s", "2562048h"])
        lookback = rng.choice(["9" * 400 + "d", "99999d", "1h", "366d", "367d", "x"])
        trace_id = rng.choice(["ab" * 16, "zz", "0" * 40, "../../etc/passwd", "%00", "ab" * 8])
        return rng.choice(
            [
                ("/api/traces", {"service": "web", "limit": big}),
                ("/api/traces", {"service": "web", "tags": tags}),
                ("/api/traces", {"minDuration": duration, "lookback": duration}),
                ("/api/traces", {"start": big, "end": big}),
                ("/api/traces", [("traceID", trace_id)] * rng.choice([1, 5])),
                ("/api/traces", [("traceID", "a1")] * 1501),  # past the cap, within a URL
                ("/api/v3/traces", {"query.num_traces": big}),
                ("/api/v3/traces", {"query.attributes": tags, "query.num_traces": "5"}),
                ("/api/v3/traces", {"query.start_time_min": hostile(), "query.num_traces": "5"}),
                ("/api/threadline/search", {"filter": filt, "limit": big}),
                ("/api/threadline/search", {"tags": tags, "maxDuration": duration}),
                ("/api/threadline/analysis/dependencies", {"lookback": lookback}),
                ("/api/threadline/analysis/completeness", {"lookback": lookback, "buckets": big}),
                ("/api/threadline/analysis/summaries", [("id", trace_id)] * rng.choice([1, 101])),
                ("/api/dependencies", {"endTs": big, "lookback": big}),
                (f"/api/traces/{trace_id}", {}),
                (f"/api/v3/traces/{trace_id}", {}),
                (f"/api/threadline/analysis/trace/{trace_id}", {"skew": "1"}),
                ("/api/services", {}),
                ("/api/operations", {"service": hostile(), "spanKind": hostile()}),
                ("/../../../etc/passwd", {}),
                ("/%2e%2e/%2e%2e/etc/passwd", {}),
            ]
        )


# ------------------------------------------------------------------------------ campaign


def make_store(path: str, spans: int) -> None:
    from bench_serve_query import _fill
    from threadline.server.storage.duckdb import DuckDBStore

    store = DuckDBStore(path)
    if spans:
        _fill(store, spans)
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--spans", type=int, default=100_000, help="spans in the store first")
    parser.add_argument("--db", default=None, help="a DuckDB file to start from (copied)")
    args = parser.parse_args()

    from threadline.server import spawn
    from threadline.server.storage.duckdb import DuckDBStore

    work = tempfile.mkdtemp(prefix="threadline-fuzz-")
    base = args.db or os.path.join(tempfile.gettempdir(), f"threadline-fuzz-{args.spans}.duckdb")
    if not os.path.exists(base):
        print(f"making a store of {args.spans} spans at {base} ...", flush=True)
        make_store(base, args.spans)
    db = os.path.join(work, "fuzz.duckdb")
    shutil.copy(base, db)

    rng = random.Random(args.seed)
    inputs = Inputs(rng)
    answers: collections.Counter = collections.Counter()
    outside: list[str] = []
    unanswered: list[str] = []
    acknowledged: dict[str, int] = {}
    peak = 0
    started = time.perf_counter()
    with spawn(db) as srv:
        pid = srv.proc.pid
        start_rss = rss_kib(pid)
        http = httpx.Client(timeout=120)
        channel = grpc.insecure_channel(srv.urls.otlp_grpc)
        export = channel.unary_unary(EXPORT)

        def post(body: bytes, media: str, **headers: str) -> int | None:
            try:
                return http.post(
                    srv.urls.otlp_http + "/v1/traces",
                    content=body,
                    headers={"content-type": media, **headers},
                ).status_code
            except httpx.HTTPError as exc:
                unanswered.append(f"OTLP/HTTP: {type(exc).__name__}")
                return None

        def call_grpc(body: bytes) -> grpc.StatusCode | None:
            try:
                export(body, timeout=120)
                return grpc.StatusCode.OK
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    unanswered.append("gRPC: no answer in 120 s")
                    return None
                return code

        for case in range(1, args.cases + 1):
            if case % VALID_EVERY == 0:  # a valid export, whose spans must survive
                req = make_request(rng.randint(5, 60), seed=100_000 + case)
                counts = collections.Counter(
                    s.trace_id.hex()
                    for rs in req.resource_spans
                    for ss in rs.scope_spans
                    for s in ss.spans
                )
                body = req.SerializeToString()
                if rng.random() < 0.5:
                    ok = post(body, PB) == 200
                    where = "valid OTLP/HTTP"
                else:
                    ok = call_grpc(body) == grpc.StatusCode.OK
                    where = "valid OTLP/gRPC"
                answers[where, "acknowledged" if ok else "refused"] += 1
                if ok:
                    acknowledged.update(counts)
                continue
            kind = rng.choice(
                ["http-pb", "http-pb", "http-json", "http-gzip", "grpc", "grpc", "api", "api"]
            )
            if kind == "http-pb":
                status: Any = post(inputs.protobuf(), PB)
            elif kind == "http-json":
                status = post(inputs.json_body(), JSON)
            elif kind == "http-gzip":
                r = rng.random()
                if r < 0.3:
                    body = inputs.bomb
                elif r < 0.6:
                    body = gzip.compress(inputs.protobuf())
                else:
                    body = inputs.damaged(gzip.compress(rng.choice(inputs.small)))
                media = rng.choice([PB, JSON, "text/plain", ""])
                status = post(body, media, **{"content-encoding": rng.choice(["gzip", "br"])})
            elif kind == "grpc":
                status = call_grpc(inputs.protobuf())
            else:
                path, params = inputs.query()
                try:
                    # encoded here: a lone surrogate goes out as its (invalid) UTF-8 bytes
                    query = urllib.parse.urlencode(
                        params, doseq=True, encoding="utf-8", errors="surrogatepass"
                    )
                    status = http.get(f"{srv.urls.api}{path}?{query}").status_code
                except httpx.HTTPError as exc:
                    unanswered.append(f"API {path}: {type(exc).__name__}")
                    status = None
            transport = {"http-pb": "OTLP/HTTP", "http-json": "OTLP/HTTP", "http-gzip": "OTLP/HTTP"}
            name = transport.get(kind, "OTLP/gRPC" if kind == "grpc" else "API")
            label = status.name if isinstance(status, grpc.StatusCode) else status
            answers[name, label] += 1
            if status is not None and status not in HTTP_DOCUMENTED | GRPC_DOCUMENTED:
                outside.append(f"case {case} {kind}: {label}")
            peak = max(peak, rss_kib(pid))
            if case % 1000 == 0:
                print(
                    f"{case} cases, {time.perf_counter() - started:.0f} s, "
                    f"RSS +{(peak - start_rss) // 1024} MB",
                    flush=True,
                )
        peak = max(peak, rss_kib(pid, "VmHWM"))
        channel.close()
        http.close()
        srv.kill()  # SIGKILL: nothing flushed beyond what was acknowledged

    store = DuckDBStore(db)  # opened again: its WAL and segments replayed, as on a restart
    found = {t: len(store.get_trace(t)) for t in acknowledged}
    store.close()
    lost = sum(max(0, n - found.get(t, 0)) for t, n in acknowledged.items())
    shutil.rmtree(work, ignore_errors=True)

    rise_mb = (peak - start_rss) / 1024
    print(f"\n{args.cases} cases, seed {args.seed}, {time.perf_counter() - started:.0f} s")
    for (where, label), n in sorted(answers.items(), key=lambda x: (x[0][0], str(x[0][1]))):
        print(f"  {where:<16} {label!s:<20} {n}")
    print(f"answers outside the documented statuses: {len(outside)}")
    for line in outside[:20]:
        print("  " + line)
    print(f"unanswered calls: {len(unanswered)}")
    for line in unanswered[:20]:
        print("  " + line)
    print(f"acknowledged spans: {sum(acknowledged.values())}, lost after SIGKILL: {lost}")
    print(f"server RSS: {start_rss // 1024} MB when ready, peak +{rise_mb:.0f} MB")
    bad = outside or unanswered or lost or rise_mb > RSS_BUDGET_KIB / 1024
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
