"""Collector under pressure: heavy and hostile requests against a healthy node's latency and
the collector's memory, each compared with the same collector at rest in the same run.

A real collector process (`edge-monitor serve`, one uvicorn worker, default settings unless
said otherwise) on loopback. Four scenarios:

1. Large bodies (SQLite and PostgreSQL): 16 senders each ship one 13 MB records body (10,000
   records, gzip 0.3 MB) at once and, like the SDK, send it again after Retry-After while the
   collector answers 503 ``busy``. Meanwhile a healthy node ships 20-record batches one after
   another. Figures: the collector's RSS before, at its peak (VmHWM) and 3 s after the burst;
   the healthy node's p50/p99 latency during the burst against the same node alone. Goals:
   RSS growth <= 256 MiB, healthy p99 <= 1 s.
2. Strangers and NaN bodies: /healthz latency while 4 clients with unknown tokens (then 4
   nodes with their own tokens) send 20 KB bodies of NaN as fast as they are answered, against
   /healthz at rest.
3. Rate limit: one node floods heartbeats from 8 threads (its accepted rate against the
   configured limit; a healthy node's heartbeat latency meanwhile, against alone), and the
   SDK's own pace draining a backlog with its default options (requests/s against the limit).
4. Slow connections: 1,500 connections (half slow headers, half slow bodies, one byte a
   second): how long until the collector has closed them all, against its header and body
   deadlines, and /healthz latency meanwhile.

Run: ``python bench/collector_pressure.py [--quick] [--skip-postgres]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import re
import selectors
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

import common
from monitor import wire
from monitor.config import Settings
from monitor.sdk import Monitor

MiB = 1024 * 1024
GOAL_GROWTH_MIB = 256.0
GOAL_HEALTHY_P99_S = 1.0
LARGE_SENDERS = 16


# --- a collector process and what it shows from outside ----------------------------------------


@contextlib.contextmanager
def collector(url: str, log: Path, env: dict[str, str] | None = None) -> Iterator[Any]:
    """`edge-monitor serve` with extra ``MONITOR_*`` variables in its environment."""
    saved = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})
    try:
        process = common.CollectorProcess(url, log).start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    try:
        yield process
    finally:
        process.stop()


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak so far) of a process, in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found


def request(
    url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with the standard library (status, headers, body); errors are answers."""
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def requests_counted(url: str) -> dict[tuple[str, str], int]:
    _, _, text = request(url + "/metrics")
    counted: dict[tuple[str, str], int] = {}
    for labels, value in re.findall(
        r"^edge_monitor_requests_total\{([^}]*)\} (\S+)$", text.decode(), re.MULTILINE
    ):
        named = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        # Summed over methods: the bench asks which routes refused how often.
        key = (named["route"], named["status"])
        counted[key] = counted.get(key, 0) + int(float(value))
    return counted


def auth(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **more}


class Prober:
    """Sends ``send()`` back to back on a thread and keeps each call's latency."""

    def __init__(self, send: Callable[[], int], pause: float = 0.0) -> None:
        self._send = send
        self._pause = pause
        self._stop = threading.Event()
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.perf_counter()
            status = self._send()
            self.latencies.append(time.perf_counter() - start)
            self.statuses.append(status)
            if self._pause:
                self._stop.wait(self._pause)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def run_for(self, seconds: float) -> Prober:
        with self:
            time.sleep(seconds)
        return self

    def summary(self) -> dict[str, float]:
        return {
            "n": len(self.latencies),
            "p50_ms": common.percentile(self.latencies, 50) * 1000,
            "p99_ms": common.percentile(self.latencies, 99) * 1000,
            "max_ms": max(self.latencies) * 1000,
            "errors": sum(1 for s in self.statuses if s >= 500),
        }


def small_batch(url: str, token: str) -> Callable[[], int]:
    def send() -> int:
        records = [
            {
                "id": common.new_id(),
                "ts": time.time(),
                "features": {"temperature_c": 70.5, "rpm": 1450.0, "machine_type": "pump"},
                "prediction": "ok",
                "probabilities": {"ok": 0.9, "fail": 0.1},
                "latency_ms": 1.5,
            }
            for _ in range(20)
        ]
        body = orjson.dumps(wire.records_body(uuid.uuid4().hex, common.MODEL, "1", records))
        return request(url + wire.RECORDS_PATH, body=body, headers=auth(token))[0]

    return send


def healthz(url: str) -> Callable[[], int]:
    return lambda: request(url + "/healthz")[0]


# --- 1. large bodies -----------------------------------------------------------------------


def large_body(records: int = 10_000, features: int = 62) -> bytes:
    """About 13 MB of records JSON that gzips to about 0.3 MB (repetitive sensor values)."""
    values = {f"sensor_{i:02d}": 1000.5 + i for i in range(features)}
    now = time.time()
    rows = [
        {
            "id": common.new_id(),
            "ts": round(now - 60 + i / 1000, 3),
            "features": values,
            "prediction": "ok",
            "probabilities": {"ok": 0.9, "fail": 0.1},
            "latency_ms": 1.25,
        }
        for i in range(records)
    ]
    body = wire.records_body(uuid.uuid4().hex, common.MODEL, "1", rows)
    return gzip.compress(orjson.dumps(body), compresslevel=6)


def large_bodies(url: str, token: str, bodies: list[bytes]) -> dict[str, Any]:
    """Each body sent at once from its own thread, again after Retry-After until accepted."""
    outcomes: list[dict[str, Any]] = []
    headers = auth(token, **{"Content-Encoding": "gzip"})

    def ship(body: bytes) -> None:
        attempts, first = 0, 0
        while True:
            status, answer_headers, _ = request(url + wire.RECORDS_PATH, body=body, headers=headers)
            attempts += 1
            first = first or status
            if status != 503:
                outcomes.append({"status": status, "attempts": attempts, "first": first})
                return
            time.sleep(float(answer_headers.get("Retry-After", "1")))

    threads = [threading.Thread(target=ship, args=(body,)) for body in bodies]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "seconds": time.perf_counter() - start,
        "statuses": sorted({o["status"] for o in outcomes}),
        "first_busy": sum(1 for o in outcomes if o["first"] == 503),
        "attempts": sum(o["attempts"] for o in outcomes),
    }


def scenario_large(
    db: str, url: str, tmp: Path, senders: int, alone_batches: int
) -> dict[str, Any]:
    common.migrate(url)
    fleet = common.register_fleet(url, ["heavy", "healthy"])
    bodies = [large_body() for _ in range(senders)]
    decoded = len(gzip.decompress(bodies[0]))
    common.say(
        f"  {db}: {senders} bodies of {decoded / 1e6:.1f} MB decoded "
        f"({len(bodies[0]) / 1e6:.2f} MB gzip)"
    )
    with collector(url, tmp / f"large-{db}.log") as served:
        healthy = small_batch(served.url, fleet["healthy"][1])
        for _ in range(10):  # warm: imports, caches, connection pools
            healthy()
        # A healthy node's pace: a batch every 20 ms at most, within the default rate limit.
        alone = Prober(healthy, pause=0.02)
        with alone:
            while len(alone.latencies) < alone_batches:
                time.sleep(0.01)
        before = memory_mib(served.proc.pid)["VmRSS"]
        with Prober(healthy, pause=0.02) as during:
            burst = large_bodies(served.url, fleet["heavy"][1], bodies)
        after = memory_mib(served.proc.pid)
        time.sleep(3)
        settled = memory_mib(served.proc.pid)
        counted = requests_counted(served.url)
    result = {
        "decoded_mb": decoded / 1e6,
        "rss_before_mib": before,
        "rss_peak_mib": after["VmHWM"],
        "rss_growth_mib": after["VmHWM"] - before,
        "rss_after_mib": after["VmRSS"],
        "rss_after_3s_mib": settled["VmRSS"],
        "held_mib": settled["VmRSS"] - before,
        "alone": alone.summary(),
        "during": during.summary(),
        "healthy_statuses": sorted(set(during.statuses)),
        "burst": burst,
        "server_errors": sum(
            n for (_, status), n in counted.items() if status.startswith("5") and status != "503"
        ),
    }
    result["busy_503"] = counted.get((wire.RECORDS_PATH, "503"), 0)
    result["p99_ratio"] = result["during"]["p99_ms"] / result["alone"]["p99_ms"]
    result["passed"] = (
        result["rss_growth_mib"] <= GOAL_GROWTH_MIB
        and result["during"]["p99_ms"] <= GOAL_HEALTHY_P99_S * 1000
        and result["healthy_statuses"] == [200]
        and burst["statuses"] == [200]
        and result["server_errors"] == 0
    )
    return result


# --- 2. strangers and NaN bodies -------------------------------------------------------------


def nan_body(size: int = 20_000) -> bytes:
    return b'{"ts": 1, "sdk": {"values": [' + b",".join([b"NaN"] * (size // 4)) + b"]}}"


def flood(url: str, paths_and_tokens: list[tuple[str, str]], seconds: float) -> dict[str, Any]:
    """Clients posting NaN bodies back to back while /healthz is probed."""
    stop = threading.Event()
    statuses: list[int] = []
    body = nan_body()

    def client(path: str, token: str) -> None:
        while not stop.is_set():
            statuses.append(request(url + path, body=body, headers=auth(token))[0])

    threads = [threading.Thread(target=client, args=pt) for pt in paths_and_tokens]
    for thread in threads:
        thread.start()
    try:
        probe = Prober(healthz(url), pause=0.05).run_for(seconds)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return {
        "healthz": probe.summary(),
        "requests_per_s": len(statuses) / seconds,
        "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
    }


def scenario_strangers(url: str, tokens: list[str], seconds: float) -> dict[str, Any]:
    rest = Prober(healthz(url), pause=0.05).run_for(seconds).summary()
    paths = [wire.HEARTBEATS_PATH, wire.LABELS_PATH] * 2
    strangers = flood(url, [(p, f"ema_stranger-{i}") for i, p in enumerate(paths)], seconds)
    nodes = flood(url, [(wire.HEARTBEATS_PATH, t) for t in tokens[:4]], seconds)
    return {"at_rest": rest, "strangers": strangers, "nodes": nodes}


# --- 3. rate limit --------------------------------------------------------------------------


def scenario_rate(
    url: str, flooder: str, healthy: str, seconds: float, backlog: int, tmp: Path
) -> dict[str, Any]:
    settings = Settings()

    def beat(token: str) -> Callable[[], int]:
        body = orjson.dumps({"ts": time.time(), "sdk": {}})
        return lambda: request(url + wire.HEARTBEATS_PATH, body=body, headers=auth(token))[0]

    alone = Prober(beat(healthy), pause=0.02).run_for(seconds).summary()
    stop = threading.Event()
    statuses: list[int] = []

    def hammer() -> None:
        send = beat(flooder)
        while not stop.is_set():
            statuses.append(send())

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        during = Prober(beat(healthy), pause=0.02).run_for(seconds).summary()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    accepted = statuses.count(204)

    # The SDK draining a backlog with its defaults: as fast as the collector answers.
    before = requests_counted(url)
    monitor = Monitor(url, healthy, common.MODEL, "1", spool_dir=tmp / "sdk-spool")
    start = time.perf_counter()
    for i in range(backlog):
        monitor.log({"temperature_c": 70.0 + i % 7, "rpm": 1450.0}, "ok", request_id=f"r-{i}")
        monitor.log_label(f"r-{i}", "ok")
    flushed = monitor.flush(timeout=600)
    drain_s = time.perf_counter() - start
    monitor.close()
    after = requests_counted(url)
    sent = {
        path: sum(n - before.get(k, 0) for k, n in after.items() if k[0] == path)
        for path in (wire.RECORDS_PATH, wire.LABELS_PATH, wire.HEARTBEATS_PATH)
    }
    limited = sum(n - before.get(k, 0) for k, n in after.items() if k[1] == "429")
    pace = sum(sent.values()) / drain_s
    return {
        "limit_per_s": settings.rate_limit_per_second,
        "burst": settings.rate_limit_burst,
        "flood": {
            "requests_per_s": len(statuses) / seconds,
            "accepted_per_s": accepted / seconds,
            "limited_share": statuses.count(429) / max(1, len(statuses)),
        },
        "healthy_alone": alone,
        "healthy_during": during,
        "sdk": {
            "records": backlog,
            "flushed": flushed,
            "seconds": drain_s,
            "requests": sent,
            "requests_per_s": pace,
            "pace_over_limit": pace / settings.rate_limit_per_second,
            "answered_429": limited,
        },
    }


# --- 4. slow connections ------------------------------------------------------------------------


def scenario_slow(
    url: str, tokens: list[str], count: int, header_s: float, body_s: float
) -> dict[str, Any]:
    """``count`` connections, half dripping a header value, half dripping a body (valid bytes
    both), one byte a second."""
    port = int(url.rsplit(":", 1)[1])
    selector = selectors.DefaultSelector()
    opened: dict[socket.socket, tuple[str, float]] = {}
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        if i % 2:
            kind = "body"
            head = (
                f"POST {wire.RECORDS_PATH} HTTP/1.1\r\nHost: c\r\n"
                f"Authorization: Bearer {tokens[i % len(tokens)]}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
            )
        else:
            kind, head = "headers", "POST /v1/records HTTP/1.1\r\nHost: c\r\nX-Slow: "
        sock.send(head.encode())
        opened[sock] = (kind, time.monotonic())
        selector.register(sock, selectors.EVENT_READ)
    closed: dict[str, list[float]] = {"headers": [], "body": []}
    statuses: dict[str, dict[str, int]] = {"headers": {}, "body": {}}
    deadline = time.monotonic() + max(header_s, body_s) + 15
    next_drip = time.monotonic() + 1.0
    with Prober(healthz(url), pause=0.05) as probe:
        while opened and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                kind, since = opened.pop(sock)
                closed[kind].append(time.monotonic() - since)
                status = data[9:12].decode() if data.startswith(b"HTTP/1.1 ") else "closed"
                statuses[kind][status] = statuses[kind].get(status, 0) + 1
                selector.unregister(sock)
                sock.close()
            if time.monotonic() >= next_drip:
                next_drip += 1.0
                for sock, (kind, _) in list(opened.items()):
                    with contextlib.suppress(OSError):
                        sock.send(b"a" if kind == "headers" else b" ")
    still_open = len(opened)
    for sock in opened:
        sock.close()
    return {
        "connections": count,
        "header_timeout_s": header_s,
        "body_timeout_s": body_s,
        "still_open_at_end": still_open,
        "headers_closed_after_s": max(closed["headers"], default=float("nan")),
        "body_closed_after_s": max(closed["body"], default=float("nan")),
        "answers": statuses,
        "healthz": probe.summary(),
    }


# --- the run ------------------------------------------------------------------------------------


def extra_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-postgres", action="store_true")


def main() -> int:
    args = common.parse_args(__doc__ or "", extra_args)
    quick = args.quick
    senders = 4 if quick else LARGE_SENDERS
    seconds = 2.0 if quick else 15.0
    slow_count = 100 if quick else 1_500
    backlog = 3_000 if quick else 50_000
    info = common.machine_info()
    common.say(f"Collector pressure | {common.machine_line(info)}")
    pg_problem = "skipped (--skip-postgres)" if args.skip_postgres or quick else None
    pg_problem = pg_problem or common.postgres_problem()
    results: dict[str, Any] = {"large": {}}
    with common.scratch_dir("pressure") as tmp:
        common.say("1. large bodies")
        sqlite_url = f"sqlite:///{tmp / 'pressure.db'}"
        results["large"]["SQLite"] = scenario_large(
            "SQLite", sqlite_url, tmp, senders, 50 if quick else 200
        )
        if pg_problem is None:
            with common.postgres_database("bench_pressure") as pg_url:
                results["large"]["PostgreSQL"] = scenario_large(
                    "PostgreSQL", pg_url, tmp, senders, 200
                )
        else:
            common.say(f"  PostgreSQL: {pg_problem}")
        fleet = common.register_fleet(sqlite_url, [f"node-{i}" for i in range(8)])
        tokens = [token for _, token in fleet.values()]
        with collector(sqlite_url, tmp / "sqlite.log") as served:
            common.say("2. strangers and NaN bodies")
            results["strangers"] = scenario_strangers(served.url, tokens, seconds)
            common.say("3. rate limit")
            results["rate"] = scenario_rate(served.url, tokens[4], tokens[5], seconds, backlog, tmp)
        common.say("4. slow connections")
        header_s, body_s = (1.0, 2.0) if quick else (10.0, 30.0)
        env = {
            "MONITOR_HEADER_TIMEOUT_SECONDS": str(header_s),
            "MONITOR_BODY_TIMEOUT_SECONDS": str(body_s),
        }
        with collector(sqlite_url, tmp / "slow.log", env) as served:
            results["slow"] = scenario_slow(served.url, tokens, slow_count, header_s, body_s)
    report(results)
    passed = all(r["passed"] for r in results["large"].values())
    passed = passed and results["slow"]["still_open_at_end"] == 0
    path = common.write_results(
        "collector_pressure",
        quick,
        {"machine": info, "results": results, "postgres_problem": pg_problem, "passed": passed},
    )
    common.say(f"results: {path}")
    large = "; ".join(
        f"{db} RSS +{r['rss_growth_mib']:.0f} MiB, healthy p99 {r['during']['p99_ms']:.0f} ms "
        f"({r['p99_ratio']:.1f}x alone)"
        for db, r in results["large"].items()
    )
    common.say(
        f"Collector pressure, {senders} x 13 MB bodies: {large}: {common.verdict(passed)} "
        f"(goals: growth <= {GOAL_GROWTH_MIB:.0f} MiB, healthy p99 <= {GOAL_HEALTHY_P99_S} s, "
        "every body accepted in the end, slow connections all closed)"
    )
    return 0


def report(results: dict[str, Any]) -> None:
    common.say("")
    rows = []
    for db, r in results["large"].items():
        rows.append(
            [
                db,
                f"{r['rss_before_mib']:.0f}",
                f"{r['rss_peak_mib']:.0f} (+{r['rss_growth_mib']:.0f})",
                f"{r['rss_after_3s_mib']:.0f} (+{r['held_mib']:.0f})",
                f"{r['alone']['p50_ms']:.0f} / {r['alone']['p99_ms']:.0f}",
                f"{r['during']['p50_ms']:.0f} / {r['during']['p99_ms']:.0f}",
                f"{r['p99_ratio']:.1f}",
                f"{r['burst']['first_busy']} / {r['burst']['attempts']}",
                f"{r['burst']['seconds']:.1f}",
                common.verdict(r["passed"]),
            ]
        )
    common.print_table(
        [
            "database",
            "RSS before MiB",
            "peak MiB",
            "3 s after MiB",
            "healthy alone p50/p99 ms",
            "during p50/p99 ms",
            "p99 ratio",
            "busy first / attempts",
            "all accepted after s",
            "verdict",
        ],
        rows,
    )
    s = results["strangers"]
    common.say("")
    common.print_table(
        ["/healthz while", "p50 ms", "p99 ms", "max ms", "their requests/s", "their answers"],
        [
            [
                name,
                f"{part['p50_ms']:.1f}",
                f"{part['p99_ms']:.1f}",
                f"{part['max_ms']:.1f}",
                "-" if extra is None else f"{extra['requests_per_s']:,.0f}",
                "-" if extra is None else extra["statuses"],
            ]
            for name, part, extra in (
                ("at rest", s["at_rest"], None),
                ("4 strangers send 20 KB NaN bodies", s["strangers"]["healthz"], s["strangers"]),
                ("4 nodes send 20 KB NaN bodies", s["nodes"]["healthz"], s["nodes"]),
            )
        ],
    )
    r = results["rate"]
    common.say("")
    common.say(
        f"Rate limit {r['limit_per_s']:g}/s, burst {r['burst']}: a node flooding from 8 threads "
        f"made {r['flood']['requests_per_s']:,.0f} requests/s, {r['flood']['accepted_per_s']:,.0f}"
        f"/s accepted ({r['flood']['limited_share']:.0%} answered 429); a healthy node's "
        f"heartbeat p99 {r['healthy_during']['p99_ms']:.1f} ms during, "
        f"{r['healthy_alone']['p99_ms']:.1f} ms alone."
    )
    sdk = r["sdk"]
    common.say(
        f"The SDK (defaults) draining {sdk['records']:,} records and their labels: "
        f"{sdk['requests_per_s']:.1f} requests/s = {sdk['pace_over_limit']:.2f} x the limit, "
        f"{sdk['answered_429']} answered 429, flushed: {sdk['flushed']} ({sdk['requests']})."
    )
    w = results["slow"]
    common.say("")
    common.say(
        f"{w['connections']:,} slow connections (headers deadline {w['header_timeout_s']:g} s, "
        f"body {w['body_timeout_s']:g} s): slow headers all closed after "
        f"{w['headers_closed_after_s']:.1f} s, slow bodies after {w['body_closed_after_s']:.1f} s"
        f", {w['still_open_at_end']} still open; answers {w['answers']}; /healthz meanwhile "
        f"p50 {w['healthz']['p50_ms']:.1f} ms, p99 {w['healthz']['p99_ms']:.1f} ms."
    )


if __name__ == "__main__":
    raise SystemExit(main())
