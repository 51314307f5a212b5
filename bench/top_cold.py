#!/usr/bin/env python3
"""Cold /top latency: distinct random instants over a history, never repeated, so every
request misses the API's cache and computes its ranking.

Usage: bench/top_cold.py BASE_URL FROM TO [--limit 200] [--requests 400]
       [--concurrency 16] [--seed 1] [--instants-out FILE]
FROM and TO are ISO-8601 instants bounding the history. Prints one line: limit,
concurrency, requests, statuses, p50 and p99 in ms (of the 200 answers), requests per
second over the whole run, rows per answer. --instants-out appends the instants asked
(one per line), so a caller can show that no instant was asked twice in a whole run
(the API's cache is keyed by instant: a repeated instant would be a hit).
"""

import argparse
import collections
import concurrent.futures
import datetime as dt
import random
import statistics
import sys
import time
import urllib.error
import urllib.request


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("start")
    ap.add_argument("end")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--instants-out")
    args = ap.parse_args()
    start = dt.datetime.fromisoformat(args.start.replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(args.end.replace("Z", "+00:00"))
    span_us = int((end - start).total_seconds() * 1_000_000)
    rng = random.Random(args.seed)
    # Microsecond instants: distinct by construction (a set makes sure).
    offsets = set()
    while len(offsets) < args.requests:
        offsets.add(rng.randrange(span_us))
    instants = [
        (start + dt.timedelta(microseconds=o)).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for o in offsets
    ]

    if args.instants_out:
        with open(args.instants_out, "a") as f:
            f.write("".join(i + "\n" for i in instants))

    def one(at: str):
        url = f"{args.base}/top?limit={args.limit}&datetime={at}"
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            body = e.read()
            status = e.code
        ms = (time.perf_counter() - began) * 1000
        rows = body.count(b'"rank_source"') if status == 200 else 0
        return status, ms, rows

    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(one, instants))
    elapsed = time.perf_counter() - began
    statuses = collections.Counter(s for s, _, _ in results)
    ok = sorted(ms for s, ms, _ in results if s == 200)
    rows = [n for s, _, n in results if s == 200]
    if not ok:
        print(f"limit={args.limit} c={args.concurrency} no 200 answers: {dict(statuses)}")
        return 1
    p99 = ok[min(len(ok) - 1, int(len(ok) * 0.99))]
    print(
        f"limit={args.limit} c={args.concurrency} requests={len(results)} "
        f"statuses={dict(statuses)} non200={len(results) - len(ok)} "
        f"p50={statistics.median(ok):.2f}ms p99={p99:.2f}ms "
        f"rps={len(results) / elapsed:.0f} rows/answer={statistics.mean(rows):.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
