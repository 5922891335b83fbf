"""Benchmark of the SDK's hot path and pipeline: log() cost and end-to-end records/s.

Run: ``.venv/bin/python bench/bench_sdk_log.py``. Prints the cost of ``Monitor.log()`` in µs
and as a ratio to ``uuid.uuid4()`` (a machine-independent yardstick), then how many records/s
go from log() through the disk spool to a loopback collector.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import threading
import time
import timeit
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from monitor.sdk import Monitor

FEATURES = {f"f{i}": float(i) for i in range(10)} | {"machine_type": "press"}
PROBS = {"ok": 0.9, "fail": 0.1}


class _Collector(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = json.loads(gzip.decompress(raw))
        out = json.dumps({"accepted": len(body.get("records", body.get("labels", [])))}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: object) -> None:
        pass


def bench_log(n: int = 200_000) -> float:
    """µs per log() call, with the writer held off so only the caller's cost is measured."""
    mon = Monitor(
        "http://127.0.0.1:1",
        "t",
        "bench",
        "1",
        spool_dir=False,
        queue_size=n + 1,
        batch_size=10_000,
        spool_flush_interval=3600.0,
        heartbeat_interval=None,
    )
    mon._wake_at = n + 1  # keep the writer asleep: measure log() alone
    start = time.perf_counter()
    for _ in range(n):
        mon.log(FEATURES, "ok", probabilities=PROBS, latency_ms=1.5)
    per_call = (time.perf_counter() - start) / n * 1e6
    mon._record_q.clear()  # nothing to deliver: the URL is a dead port
    mon.close(0.1)
    return per_call


def bench_pipeline(n: int = 100_000) -> float:
    """Records/s from log() to a loopback collector through a disk spool."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as spool:
        mon = Monitor(
            f"http://127.0.0.1:{server.server_port}",
            "t",
            "bench",
            "1",
            spool_dir=spool,
            queue_size=n + 1,
            heartbeat_interval=None,
        )
        start = time.perf_counter()
        for _ in range(n):
            mon.log(FEATURES, "ok", probabilities=PROBS, latency_ms=1.5)
        assert mon.flush(120), mon.stats()
        rate = n / (time.perf_counter() - start)
        mon.close()
    server.shutdown()
    return rate


def main() -> None:
    uuid_us = timeit.timeit(uuid.uuid4, number=200_000) / 200_000 * 1e6
    log_us = bench_log()
    print(f"log(): {log_us:.2f} µs/call = {log_us / uuid_us:.2f}x uuid.uuid4() ({uuid_us:.2f} µs)")
    print(f"pipeline log -> spool -> loopback collector: {bench_pipeline():,.0f} records/s")


if __name__ == "__main__":
    main()
