"""A simulated edge node for end-to-end tests: logs records through the SDK, keeps a ledger.

Every record whose ``log()`` returned is written to the ledger (``request_id returned_at``)
right away, so a test that SIGKILLs this process knows what the SDK had promised to keep.
Request ids are ``<id prefix>-<n>``; a prefix per run keeps the runs of one node apart.

With ``--stats PATH`` the SDK's ``stats()`` are written there as JSON (replaced atomically)
about every half second while logging, before flushing, and at exit with ``"final": true``
and whether the flush succeeded: a SIGKILLed run leaves its last snapshot behind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

from monitor.sdk import Monitor
from monitor.sdk.errors import set_internal_error_hook

internal_errors: list[str] = []

#: Seconds between the stats snapshots of ``--stats``.
STATS_EVERY = 0.5


def write_stats(path: str, stats: dict[str, object], **extra: object) -> None:
    """Replace ``path`` with ``stats`` (plus ``extra``) as JSON, never leaving half a file."""
    if not path:
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w") as out:
        json.dump({**stats, **extra, "errors": internal_errors}, out)
    os.replace(tmp, path)


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
    parser.add_argument("--id-prefix", default="", help="request ids' prefix (default: node)")
    parser.add_argument("--stats", default="", help="file for stats() snapshots (JSON)")
    parser.add_argument("--spool-flush-interval", type=float, default=0.5)
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
        spool_flush_interval=args.spool_flush_interval,
        max_backoff=1.0,
        backoff_base=0.1,
        heartbeat_interval=None,
        atexit_timeout=0,
    )
    prefix = args.id_prefix or args.node
    started = time.monotonic()
    next_stats = started
    with open(args.ledger, "a", buffering=1) as ledger:
        for i in range(args.start, args.start + args.count):
            request_id = f"{prefix}-{i}"
            monitor.log(
                {"temperature": round(rng.gauss(70, 4), 2), "rpm": rng.randint(1200, 1600)},
                "ok",
                request_id=request_id,
                probabilities={"ok": 0.9, "fail": 0.1},
            )
            ledger.write(f"{request_id} {time.time():.6f}\n")
            if args.stats and time.monotonic() >= next_stats:
                write_stats(args.stats, monitor.stats(), final=False)
                next_stats = time.monotonic() + STATS_EVERY
            if args.rate:
                time.sleep(max(0.0, started + (i - args.start + 1) / args.rate - time.monotonic()))
    write_stats(args.stats, monitor.stats(), final=False)
    delivered = monitor.flush(timeout=args.flush_timeout)
    monitor.close(timeout=5)
    stats = monitor.stats()
    write_stats(args.stats, stats, final=True, flushed=delivered)
    print(json.dumps({"flushed": delivered, "stats": stats, "errors": internal_errors}))
    return 0 if delivered and not internal_errors else 1


if __name__ == "__main__":
    sys.exit(main())
