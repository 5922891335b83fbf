"""P6: the edge runtime's cost per call, and fp32 vs int8.

Throughput of ``EdgeRuntime.predict`` (validate the features against the card, one-hot and
fill, ``session.run``, threshold, ``Monitor.log`` at 10% sampling to an unreachable loopback
collector with a memory-only spool) divided by a bare ``session.run`` loop on the same model
and the same inputs already as float32 tensors, batch 1, one thread. Goal: >= 0.95.

Variants run interleaved (a rotating order, ``--reps`` rounds) and each figure is the median
round, so that a busy machine moves all of them alike. The runtime's overhead is a fixed cost
per call, so the script also times a heavier synthetic model with the same inputs (random
weights, wide hidden layers; needs the ``onnx`` package) to show where the ratio lands when
inference itself is not ~10 us.

Run: ``python bench/p6_runtime.py [--quick] [--json results.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from monitor.demo_model import paths
from monitor.fleet.machines import MachineFleetGenerator
from monitor.runtime import EdgeRuntime, ModelCard
from monitor.runtime.preprocess import Preprocessor
from monitor.runtime.runtime import session_options
from monitor.sdk import Monitor

GOAL_RATIO = 0.95


def dead_url() -> str:
    """A loopback URL where nothing listens: every send is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def table(headers: list[str], rows: list[list[Any]]) -> None:
    """Print a Markdown table."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(headers, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print(flush=True)


#: Idle time after each timed run whose CPU still counts: the SDK's writer thread encodes the
#: queued records shortly after log() returned, and that work is part of the cost.
SETTLE_S = 0.3


def throughput(fn: Callable[[int], None], calls: int) -> tuple[float, float]:
    """(calls per wall second, calls per CPU second of the whole process) of ``fn(calls)``.

    CPU time counts every thread of this process (the SDK's included) and not the other
    processes on the machine, so it is the steadier figure on a shared box.
    """
    cpu0, wall0 = time.process_time(), time.perf_counter()
    fn(calls)
    wall = time.perf_counter() - wall0
    time.sleep(SETTLE_S)
    cpu = time.process_time() - cpu0
    return calls / wall, calls / cpu


def interleaved(
    variants: dict[str, Callable[[int], None]], calls: int, reps: int
) -> dict[str, dict[str, float]]:
    """Median calls per wall and per CPU second of each variant over ``reps`` rotating rounds."""
    names = list(variants)
    for name in names:  # warm-up: allocations, caches, the SDK's threads
        variants[name](min(calls, 2_000))
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for rep in range(reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            samples[name].append(throughput(variants[name], calls))
    return {
        name: {
            "wall": statistics.median(w for w, _ in values),
            "cpu": statistics.median(c for _, c in values),
        }
        for name, values in samples.items()
    }


def latencies_us(fn: Callable[[int], None], calls: int) -> np.ndarray:
    out = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter_ns()
        fn(i)
        out[i] = time.perf_counter_ns() - start
    return out / 1000.0


def heavy_model(width: int, hidden: int, seed: int = 0) -> bytes | None:
    """A random-weight MLP ``width -> hidden -> hidden -> 2`` (softmax) with the demo card's
    input and output names; None without the ``onnx`` package."""
    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    shapes = [(width, hidden), (hidden, hidden), (hidden, 2)]
    inits, nodes, last = [], [], "input"
    for i, (a, b) in enumerate(shapes):
        w = (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [last, f"w{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"]),
        ]
        last = f"a{i}"
        if i < len(shapes) - 1:
            nodes.append(helper.make_node("Relu", [last], [f"r{i}"]))
            last = f"r{i}"
    nodes.append(helper.make_node("Softmax", [last], ["probabilities"], axis=1))
    graph = helper.make_graph(
        nodes,
        "heavy",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def compare(
    model: bytes,
    card: ModelCard,
    rows: list[dict[str, Any]],
    tensors: list[np.ndarray],
    calls: int,
    reps: int,
    sdk_rates: tuple[float, ...],
) -> tuple[dict[str, dict[str, float]], list[Monitor]]:
    """Calls/s of bare session.run, the runtime alone, and the runtime with the SDK."""
    session = ort.InferenceSession(model, session_options(1), providers=["CPUExecutionProvider"])
    n = len(rows)

    def bare(k: int) -> None:
        run = session.run
        for i in range(k):
            run(["probabilities"], {"input": tensors[i % n]})

    def served(runtime: EdgeRuntime) -> Callable[[int], None]:
        def loop(k: int) -> None:
            predict = runtime.predict
            for i in range(k):
                predict(rows[i % n])

        return loop

    variants: dict[str, Callable[[int], None]] = {
        "bare session.run": bare,
        "runtime, no SDK": served(EdgeRuntime(model, card)),
    }
    monitors = []
    url = dead_url()
    for rate in sdk_rates:
        mon = Monitor(
            url,
            "emn_bench",
            card.name,
            card.version,
            sample_rate=rate,
            spool_dir=False,
            heartbeat_interval=None,
            max_backoff=5.0,
        )
        monitors.append(mon)
        runtime = EdgeRuntime(model, card, monitor=mon)
        variants[f"runtime + SDK {rate:.0%}"] = served(runtime)
    return interleaved(variants, calls, reps), monitors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; finishes in < 30 s")
    parser.add_argument("--reps", type=int, help="interleaved rounds (default 5, quick 3)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    calls = 10_000 if args.quick else 50_000
    reps = args.reps or (3 if args.quick else 5)
    latency_calls = 3_000 if args.quick else 20_000

    files = paths()
    card = ModelCard.load(files.card)
    rows = MachineFleetGenerator(2024).readings(2_000).rows()
    prep = Preprocessor(card)
    tensors = [np.array(prep.row(r)[0], dtype=np.float32).reshape(1, -1) for r in rows]
    print(
        f"P6 edge runtime | {platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"cores | Python {platform.python_version()} | onnxruntime {ort.__version__} | "
        f"{calls:,} calls x {reps} interleaved rounds, batch 1, 1 thread\n",
        flush=True,
    )
    results: dict[str, Any] = {"calls": calls, "reps": reps}

    # 1. Throughput: runtime (+ SDK) vs bare session.run, demo fp32 model.
    fp32 = files.model.read_bytes()
    tput, monitors = compare(fp32, card, rows, tensors, calls, reps, (0.1, 1.0))
    base = tput["bare session.run"]
    print("Throughput, demo model (fp32), batch 1 (per CPU second of the process; wall clock):")
    table(
        ["variant", "calls/CPU-s", "CPU us/call", "ratio", "overhead us", "wall calls/s", "ratio"],
        [
            [
                name,
                f"{t['cpu']:,.0f}",
                f"{1e6 / t['cpu']:.1f}",
                f"{t['cpu'] / base['cpu']:.3f}",
                "-" if name.startswith("bare") else f"{1e6 / t['cpu'] - 1e6 / base['cpu']:.1f}",
                f"{t['wall']:,.0f}",
                f"{t['wall'] / base['wall']:.3f}",
            ]
            for name, t in tput.items()
        ],
    )
    sdk10 = tput["runtime + SDK 10%"]
    ratio = sdk10["cpu"] / base["cpu"]
    overhead_us = 1e6 / sdk10["cpu"] - 1e6 / base["cpu"]
    needed_us = overhead_us * GOAL_RATIO / (1 - GOAL_RATIO)
    verdict = "PASS" if ratio >= GOAL_RATIO else "FAIL"
    print(
        f"runtime + SDK 10% / bare = {ratio:.3f} (CPU; wall {sdk10['wall'] / base['wall']:.3f}); "
        f"goal >= {GOAL_RATIO}: {verdict}. The runtime with the SDK adds {overhead_us:.1f} us of "
        f"CPU per call: the ratio reaches {GOAL_RATIO} for models whose session.run takes "
        f">= {needed_us:.0f} us.\n",
        flush=True,
    )
    results["demo_fp32"] = {"calls_per_s": tput, "ratio_sdk10": ratio, "overhead_us": overhead_us}
    for mon in monitors:
        mon.close(timeout=0.2)

    # 2. The same with heavier models (same inputs, same card): the overhead is per call.
    heavy_rows = []
    for hidden in (1024, 2048):
        heavy = heavy_model(len(card.columns), hidden)
        if heavy is None:
            print("(onnx not installed: heavier-model comparison skipped)\n")
            break
        heavy_card = replace(card, label_output=None)
        heavy_calls = max(300, calls // (10 if hidden == 1024 else 25))
        tput_h, monitors = compare(heavy, heavy_card, rows, tensors, heavy_calls, reps, (0.1,))
        for mon in monitors:
            mon.close(timeout=0.2)
        base_h = tput_h["bare session.run"]["cpu"]
        sdk_h = tput_h["runtime + SDK 10%"]["cpu"]
        heavy_rows.append(
            [
                f"MLP {len(card.columns)}-{hidden}-{hidden}-2",
                f"{1e6 / base_h:.1f}",
                f"{1e6 / tput_h['runtime, no SDK']['cpu']:.1f}",
                f"{1e6 / sdk_h:.1f}",
                f"{sdk_h / base_h:.3f}",
            ]
        )
        results[f"heavy_{hidden}"] = {"calls_per_s": tput_h, "ratio_sdk10": sdk_h / base_h}
    if heavy_rows:
        print("Heavier synthetic models (random weights, same inputs and card), batch 1, CPU:")
        table(
            [
                "model",
                "bare us/call",
                "runtime us/call",
                "runtime + SDK 10% us/call",
                "ratio (goal >= 0.95)",
            ],
            heavy_rows,
        )

    # 3. fp32 vs int8: size, latency per call, agreement.
    print("fp32 vs int8 (demo model), batch 1, 1 thread:")
    out_rows = []
    labels: dict[str, list[Any]] = {}
    for name, path in (("fp32", files.model), ("int8", files.model_int8)):
        session = ort.InferenceSession(
            path.read_bytes(), session_options(1), providers=["CPUExecutionProvider"]
        )
        runtime = EdgeRuntime(path, files.card)
        n = len(tensors)
        session_us = latencies_us(
            lambda i, s=session, n=n: s.run(["probabilities"], {"input": tensors[i % n]}),
            latency_calls,
        )
        runtime_us = latencies_us(lambda i, r=runtime, n=n: r.predict(rows[i % n]), latency_calls)
        labels[name] = [p.label for p in runtime.predict_batch(rows)]
        out_rows.append(
            [
                name,
                f"{path.stat().st_size:,}",
                f"{np.percentile(session_us, 50):.1f}",
                f"{np.percentile(session_us, 99):.1f}",
                f"{np.percentile(runtime_us, 50):.1f}",
                f"{np.percentile(runtime_us, 99):.1f}",
            ]
        )
        results[name] = {
            "bytes": path.stat().st_size,
            "session_p50_us": float(np.percentile(session_us, 50)),
            "session_p99_us": float(np.percentile(session_us, 99)),
            "runtime_p50_us": float(np.percentile(runtime_us, 50)),
            "runtime_p99_us": float(np.percentile(runtime_us, 99)),
        }
    table(
        [
            "model",
            "bytes",
            "session.run p50 us",
            "p99 us",
            "runtime.predict p50 us",
            "p99 us",
        ],
        out_rows,
    )
    agreement = float(
        np.mean([a == b for a, b in zip(labels["fp32"], labels["int8"], strict=True)])
    )
    print(f"int8 vs fp32: same label on {agreement:.2%} of {len(rows):,} readings.")
    results["int8_agreement"] = agreement
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
