"""A simulated edge node for end-to-end tests: logs records through the SDK, keeps a ledger.

Every record whose ``log()`` returned is written to the ledger (``request_id returned_at``)
right away, so a test that SIGKILLs this process knows what the SDK had promised to keep.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from monitor.sdk import Monitor
from monitor.sdk.errors import set_internal_error_hook

internal_errors: list[str] = []


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--start", type=int, default=0, help="first record number")
    parser.add_argument(
        "--rate", type=float, default=0.0, help="records/s; 0 = as fast as possible"
    )
    parser.add_argument("--spool", default="")
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--flush-timeout", type=float, default=60.0)
    args = parser.parse_args()
    set_internal_error_hook(lambda exc: internal_errors.append(repr(exc)))
    rng = random.Random(args.node)
    monitor = Monitor(
        args.url,
        args.token,
        "pump-failure",
        "1",
        spool_dir=args.spool or False,
        flush_interval=0.2,
        spool_flush_interval=0.5,
        max_backoff=1.0,
        backoff_base=0.1,
        heartbeat_interval=None,
        atexit_timeout=0,
    )
    started = time.monotonic()
    with open(args.ledger, "a", buffering=1) as ledger:
        for i in range(args.start, args.start + args.count):
            request_id = f"{args.node}-{i}"
            monitor.log(
                {"temperature": round(rng.gauss(70, 4), 2), "rpm": rng.randint(1200, 1600)},
                "ok",
                request_id=request_id,
                probabilities={"ok": 0.9, "fail": 0.1},
            )
            ledger.write(f"{request_id} {time.time():.6f}\n")
            if args.rate:
                time.sleep(max(0.0, started + (i - args.start + 1) / args.rate - time.monotonic()))
    delivered = monitor.flush(timeout=args.flush_timeout)
    monitor.close(timeout=5)
    print(json.dumps({"flushed": delivered, "stats": monitor.stats(), "errors": internal_errors}))
    return 0 if delivered and not internal_errors else 1


if __name__ == "__main__":
    sys.exit(main())
