"""P2: gzip bytes on the wire per record, as the SDK sends them, over uncompressed JSON bytes."""

from __future__ import annotations

import argparse
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import common
from monitor import wire
from monitor.sdk import Monitor

GOAL = 0.15


class Capture:
    """What a collector receives: body bytes (Content-Length), header bytes, decoded records."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.body_bytes = 0
        self.header_bytes = 0
        self.records: list[dict[str, Any]] = []
        self.batch_sizes: list[int] = []


def capture_server(capture: Capture) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's transport expects

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            if self.path != wire.RECORDS_PATH:
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
            records = json.loads(body)["records"]
            head = len(self.raw_requestline) + len(bytes(self.headers))
            with capture.lock:
                capture.requests += 1
                capture.body_bytes += length
                capture.header_bytes += head
                capture.records.extend(records)
                capture.batch_sizes.append(len(records))
            answer = json.dumps({"accepted": len(records), "duplicate": 0, "rejected": []})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer.encode())

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


def run(batch_size: int, n: int, seed: int) -> dict[str, Any]:
    capture = Capture()
    server = capture_server(capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        mon = Monitor(
            url,
            "emn_bench",
            common.MODEL,
            common.MODEL_VERSION,
            spool_dir=False,
            batch_size=batch_size,
            flush_interval=60.0,  # only full batches, until the final flush
            queue_size=n + 1,
            heartbeat_interval=None,
        )
        # 20 predictions per second, timestamps with time.time()'s full precision.
        step = 0.05
        t0 = time.time() - n * step
        synth = common.Synth(seed)
        for i, (features, prediction, proba, latency) in enumerate(synth.inputs(n)):
            ts = t0 + i * step + float(synth.rng.uniform(0.0, step))
            mon.log(features, prediction, probabilities=proba, latency_ms=latency, ts=ts)
        delivered = mon.flush(timeout=120)
        stats = mon.stats()
        mon.close(timeout=10)
    finally:
        server.shutdown()
        server.server_close()
    if not delivered or len(capture.records) != n:
        raise RuntimeError(f"sent {n}, captured {len(capture.records)}; stats {stats}")
    json_bytes = sum(len(json.dumps(r).encode()) for r in capture.records)
    compact = sum(len(json.dumps(r, separators=(",", ":")).encode()) for r in capture.records)
    return {
        "batch_size": batch_size,
        "records": n,
        "requests": capture.requests,
        "full_batches": sum(1 for b in capture.batch_sizes if b == batch_size),
        "wire_body_bytes": capture.body_bytes,
        "wire_header_bytes": capture.header_bytes,
        "json_bytes": json_bytes,
        "compact_json_bytes": compact,
        "ratio": capture.body_bytes / json_bytes,
        "ratio_with_headers": (capture.body_bytes + capture.header_bytes) / json_bytes,
        "ratio_vs_compact": capture.body_bytes / compact,
        "wire_bytes_per_record": capture.body_bytes / n,
        "json_bytes_per_record": json_bytes / n,
        "what_if": what_if(capture.records, batch_size, json_bytes),
    }


def _row_body(records: list[dict[str, Any]], drop_id: bool = False) -> bytes:
    if drop_id:
        records = [{k: v for k, v in r.items() if k != "id"} for r in records]
    body = wire.records_body("0" * 32, common.MODEL, common.MODEL_VERSION, records)
    return json.dumps(body, separators=(",", ":")).encode()


def _columnar_body(records: list[dict[str, Any]], drop_id: bool = False) -> bytes:
    names = list(records[0]["features"])
    classes = list(records[0]["probabilities"])
    body: dict[str, Any] = {"batch_id": "0" * 32, "model": common.MODEL, "model_version": "1"}
    if not drop_id:
        body["id"] = [r["id"] for r in records]
    body["request_id"] = [r["request_id"] for r in records]
    body["ts"] = [r["ts"] for r in records]
    body["features"] = {k: [r["features"][k] for r in records] for k in names}
    body["prediction"] = [r["prediction"] for r in records]
    body["probabilities"] = {k: [r["probabilities"][k] for r in records] for k in classes}
    body["latency_ms"] = [r["latency_ms"] for r in records]
    return json.dumps(body, separators=(",", ":")).encode()


#: Other encodings of the same records, for the design discussion only (not what the SDK sends).
WHAT_IF = (
    ("row JSON, gzip 9", lambda rs: _row_body(rs), 9),
    ("row JSON without the separate record id, gzip 6", lambda rs: _row_body(rs, True), 6),
    ("columnar JSON (names once per batch), gzip 6", lambda rs: _columnar_body(rs), 6),
    ("columnar JSON without record id, gzip 6", lambda rs: _columnar_body(rs, True), 6),
)


def what_if(records: list[dict[str, Any]], batch_size: int, json_bytes: int) -> dict[str, float]:
    out = {}
    for name, build, level in WHAT_IF:
        total = 0
        for i in range(0, len(records), batch_size):
            total += len(gzip.compress(build(records[i : i + batch_size]), level, mtime=0))
        out[name] = total / json_bytes
    return out


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, help="records per batch size")


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    n = args.records or (2_000 if args.quick else 50_000)
    info = common.machine_info()
    common.say(f"P2 wire bytes | {common.machine_line(info)}")
    common.say(f"{n:,} records per batch size, logged through Monitor (gzip level 6, default)")
    results = [run(size, n, seed=2) for size in (100, 500)]
    rows = [
        [
            r["batch_size"],
            f"{r['records']:,}",
            r["requests"],
            f"{r['json_bytes_per_record']:.0f}",
            f"{r['wire_bytes_per_record']:.1f}",
            f"{r['ratio']:.4f}",
            f"{r['ratio_with_headers']:.4f}",
            f"{r['ratio_vs_compact']:.4f}",
            common.verdict(r["ratio"] <= GOAL),
        ]
        for r in results
    ]
    common.print_table(
        [
            "batch size",
            "records",
            "requests",
            "JSON B/record",
            "wire B/record",
            "wire / JSON",
            "incl. HTTP headers",
            "wire / compact JSON",
            f"goal <= {GOAL}",
        ],
        rows,
    )
    common.say("\nWhat-if, same records (NOT what the SDK sends; for the wire-format discussion):")
    common.print_table(
        ["encoding", *(f"batch {r['batch_size']}: wire / JSON" for r in results)],
        [[name, *(f"{r['what_if'][name]:.4f}" for r in results)] for name, _, _ in WHAT_IF],
    )
    passed = all(r["ratio"] <= GOAL for r in results)
    path = common.write_results(
        "p2_wire_bytes", args.quick, {"machine": info, "results": results, "passed": passed}
    )
    common.say(f"results: {path}")
    figures = ", ".join(f"batch {r['batch_size']}: {r['ratio']:.4f}" for r in results)
    common.say(
        f"P2 ratio wire bytes / JSON bytes = {figures}: {common.verdict(passed)} (goal <= {GOAL})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
