"""P2: gzip bytes on the wire per record, as the SDK sends them, over uncompressed JSON bytes.

Also compares gzip levels (bytes and compression CPU) on the very bodies the SDK sent.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import json
import threading
import time
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import common
from monitor import wire
from monitor.sdk import Monitor
from monitor.sdk.transport import gzip_encode

GOAL = 0.15


class Capture:
    """What a collector receives: body bytes (Content-Length), header bytes, decoded bodies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.body_bytes = 0
        self.header_bytes = 0
        self.bodies: list[bytes] = []  # uncompressed, as the SDK built them
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
                capture.bodies.append(body)
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


def run(batch_size: int, n: int, seed: int, level_reps: int) -> dict[str, Any]:
    capture = Capture()
    server = capture_server(capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    logged_ts: dict[str, float] = {}
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
            rid = mon.log(features, prediction, probabilities=proba, latency_ms=latency, ts=ts)
            logged_ts[rid] = ts
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
    logged_bytes = sum(len(json.dumps(as_logged(r, logged_ts)).encode()) for r in capture.records)
    return {
        "batch_size": batch_size,
        "records": n,
        "requests": capture.requests,
        "full_batches": sum(1 for b in capture.batch_sizes if b == batch_size),
        "records_with_request_id": sum(1 for r in capture.records if "request_id" in r),
        "wire_body_bytes": capture.body_bytes,
        "wire_header_bytes": capture.header_bytes,
        "json_bytes": json_bytes,
        "compact_json_bytes": compact,
        "logged_json_bytes": logged_bytes,
        "ratio": capture.body_bytes / json_bytes,
        "ratio_with_headers": (capture.body_bytes + capture.header_bytes) / json_bytes,
        "ratio_vs_compact": capture.body_bytes / compact,
        "ratio_vs_logged": capture.body_bytes / logged_bytes,
        "wire_bytes_per_record": capture.body_bytes / n,
        "json_bytes_per_record": json_bytes / n,
        "logged_json_bytes_per_record": logged_bytes / n,
        "levels": gzip_levels(capture.bodies, n, json_bytes, level_reps),
        "what_if": what_if(capture.records, batch_size, json_bytes),
    }


def as_logged(record: dict[str, Any], logged_ts: dict[str, float]) -> dict[str, Any]:
    """The record as the caller handed it over: both ids, ``ts`` at full precision (the
    record format before the SDK dropped a request id equal to the record id and rounded)."""
    out = dict(record)
    out["ts"] = logged_ts[record["id"]]
    out = {"id": out.pop("id"), "ts": out.pop("ts"), "request_id": record["id"], **out}
    return out


LEVELS = (1, 3, 5, 6, 7, 9)
#: Compressors compared on the very bodies the SDK sent: the SDK's own at several levels
#: (Z_FILTERED strategy), and plain ``gzip.compress`` (default strategy) as the SDK had it.
COMPRESSORS: tuple[tuple[str, Callable[[bytes], bytes]], ...] = (
    *((f"SDK gzip_encode, level {lv}", partial(gzip_encode, level=lv)) for lv in LEVELS),
    ("gzip.compress, level 6 (default strategy)", partial(gzip.compress, compresslevel=6, mtime=0)),
)


def gzip_levels(
    bodies: list[bytes], n: int, json_bytes: int, reps: int
) -> dict[str, dict[str, float]]:
    """Bytes and CPU of each compressor on the captured (uncompressed) bodies.

    CPU is this thread's CPU time (``time.thread_time_ns``), so other processes on the machine
    do not inflate it; compressors are interleaved within each repetition, and the median taken.
    """
    cpu: dict[str, list[float]] = {name: [] for name, _ in COMPRESSORS}
    size: dict[str, int] = {}
    for _ in range(reps):
        for name, compress in COMPRESSORS:
            start = time.thread_time_ns()
            size[name] = sum(len(compress(b)) for b in bodies)
            cpu[name].append((time.thread_time_ns() - start) / 1000 / n)
    raw = sum(len(b) for b in bodies)
    return {
        name: {
            "ratio": size[name] / json_bytes,
            "wire_bytes_per_record": size[name] / n,
            "cpu_us_per_record": common.median(cpu[name]),
            "cpu_us_per_record_best": min(cpu[name]),
            "mb_per_cpu_second": raw / 1e6 / (common.median(cpu[name]) * n / 1e6),
        }
        for name, _ in COMPRESSORS
    }


def _columnar_body(records: list[dict[str, Any]]) -> bytes:
    names = list(records[0]["features"])
    classes = list(records[0]["probabilities"])
    body: dict[str, Any] = {"batch_id": "0" * 32, "model": common.MODEL, "model_version": "1"}
    body["id"] = [r["id"] for r in records]
    if any("request_id" in r for r in records):
        body["request_id"] = [r.get("request_id") for r in records]
    body["ts"] = [r["ts"] for r in records]
    body["features"] = {k: [r["features"][k] for r in records] for k in names}
    body["prediction"] = [r["prediction"] for r in records]
    body["probabilities"] = {k: [r["probabilities"][k] for r in records] for k in classes}
    body["latency_ms"] = [r["latency_ms"] for r in records]
    return json.dumps(body, separators=(",", ":")).encode()


#: Other encodings of the same records, for the design discussion only (not what the SDK sends).
WHAT_IF = (("columnar JSON (names once per batch), gzip 6", _columnar_body, 6),)


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
    parser.add_argument("--reps", type=int, help="repetitions of the gzip level timing")


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    n = args.records or (2_000 if args.quick else 50_000)
    reps = args.reps or (1 if args.quick else 5)
    default_level = inspect.signature(Monitor).parameters["gzip_level"].default
    info = common.machine_info()
    common.say(f"P2 wire bytes | {common.machine_line(info)}")
    common.say(
        f"{n:,} records per batch size, logged through Monitor "
        f"(gzip level {default_level}, the default)"
    )
    results = [run(size, n, seed=2, level_reps=reps) for size in (100, 500)]
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
            f"{r['ratio_vs_logged']:.4f}",
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
            "wire / JSON as logged",
            f"goal <= {GOAL}",
        ],
        rows,
    )
    sent_rid = sum(r["records_with_request_id"] for r in results)
    common.say(f"records that carried a request_id on the wire: {sent_rid}")
    common.say(
        f"\nCompressors on the bodies the SDK sent (CPU: one thread's CPU time to compress, "
        f"median of {reps}):"
    )
    common.print_table(
        [
            "compressor",
            *(f"batch {r['batch_size']}: wire / JSON" for r in results),
            *(f"batch {r['batch_size']}: CPU us/record" for r in results),
            "batch 500: MB/CPU-s",
        ],
        [
            [
                name,
                *(f"{r['levels'][name]['ratio']:.4f}" for r in results),
                *(f"{r['levels'][name]['cpu_us_per_record']:.2f}" for r in results),
                f"{results[-1]['levels'][name]['mb_per_cpu_second']:.0f}",
            ]
            for name, _ in COMPRESSORS
        ],
    )
    common.say("\nWhat-if, same records (NOT what the SDK sends; for the wire-format discussion):")
    common.print_table(
        ["encoding", *(f"batch {r['batch_size']}: wire / JSON" for r in results)],
        [[name, *(f"{r['what_if'][name]:.4f}" for r in results)] for name, _, _ in WHAT_IF],
    )
    passed = all(r["ratio"] <= GOAL for r in results)
    path = common.write_results(
        "p2_wire_bytes",
        args.quick,
        {"machine": info, "gzip_level": default_level, "results": results, "passed": passed},
    )
    common.say(f"results: {path}")
    figures = ", ".join(f"batch {r['batch_size']}: {r['ratio']:.4f}" for r in results)
    common.say(
        f"P2 ratio wire bytes / JSON bytes = {figures}: {common.verdict(passed)} (goal <= {GOAL})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
