#!/usr/bin/env python3
"""Reads during a load: the API under a steady read load, first idle, then while a
command (a coinflow-etl run) loads into the same database.

Usage: bench/during_load.py BASE_URL FROM TO COIN_IDS_FILE [--idle-seconds 20]
       [--concurrency 16] [--out results.tsv] -- COMMAND [ARG...]

Three request streams run side by side, each with CONCURRENCY workers on keep-alive
connections: chunk reads (`GET /read/first-chunk?dataset=market&size=1000` for a random
coin), `/top?limit=200` at a random microsecond instant in [FROM, TO] (cold: distinct
instants), and `POST /runtasks` with 4 random coin ids. Phase `idle` lasts
--idle-seconds; phase `load` starts COMMAND and lasts until it exits. Every request's
latency and status is kept; the output has one row per phase and stream: requests,
statuses, p50/p99/max in ms. The command's wall time and exit status go to the last
row. Prints the table; exits 1 when the command failed.
"""

import argparse
import collections
import datetime as dt
import http.client
import json
import random
import subprocess
import sys
import threading
import time
import urllib.parse


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    cut = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("start")
    ap.add_argument("end")
    ap.add_argument("coin_ids")
    ap.add_argument("--idle-seconds", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv[:cut])
    command = argv[cut + 1 :]

    base = urllib.parse.urlsplit(args.base)
    start = dt.datetime.fromisoformat(args.start.replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(args.end.replace("Z", "+00:00"))
    span_us = int((end - start).total_seconds() * 1_000_000)
    with open(args.coin_ids) as f:
        ids = [line.strip() for line in f if line.strip()]

    phase = ["idle"]
    stop = threading.Event()
    lock = threading.Lock()
    samples = collections.defaultdict(list)  # (phase, stream) -> [(ms, status)]

    def request_for(stream, rng):
        if stream == "chunk":
            coin = urllib.parse.quote(rng.choice(ids))
            return "GET", f"/read/first-chunk?dataset=market&size=1000&coin={coin}", None
        if stream == "top":
            at = start + dt.timedelta(microseconds=rng.randrange(span_us))
            return "GET", "/top?limit=200&datetime=" + at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), None
        body = json.dumps({"coins": [rng.choice(ids) for _ in range(4)]})
        return "POST", "/runtasks", body

    def worker(stream, n):
        rng = random.Random(args.seed * 1000 + n + hash(stream) % 997)
        conn = None
        while not stop.is_set():
            method, path, body = request_for(stream, rng)
            headers = {"Content-Type": "application/json"} if body else {}
            began = time.perf_counter()
            current = phase[0]
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=60)
                conn.request(method, path, body=body, headers=headers)
                reply = conn.getresponse()
                reply.read()
                status = reply.status
                if reply.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # a refused or broken connection is an answer too
                status = type(e).__name__
                if conn is not None:
                    conn.close()
                conn = None
            ms = (time.perf_counter() - began) * 1000
            with lock:
                samples[(current, stream)].append((ms, status))

    threads = [
        threading.Thread(target=worker, args=(stream, n), daemon=True)
        for stream in ("chunk", "top", "runtasks")
        for n in range(args.concurrency)
    ]
    for t in threads:
        t.start()
    time.sleep(args.idle_seconds)
    phase[0] = "load"
    began = time.perf_counter()
    proc = subprocess.run(command)
    load_seconds = time.perf_counter() - began
    stop.set()
    for t in threads:
        t.join(timeout=70)

    lines = ["phase\tstream\trequests\tnon_2xx\tstatuses\tp50_ms\tp99_ms\tmax_ms"]
    for ph in ("idle", "load"):
        for stream in ("chunk", "top", "runtasks"):
            got = samples.get((ph, stream), [])
            ms = sorted(m for m, _ in got)
            statuses = collections.Counter(s for _, s in got)
            non2xx = sum(n for s, n in statuses.items() if not (isinstance(s, int) and 200 <= s < 300))
            lines.append(
                f"{ph}\t{stream}\t{len(got)}\t{non2xx}\t"
                + " ".join(f"{s}:{n}" for s, n in sorted(statuses.items(), key=str))
                + f"\t{percentile(ms, 50):.1f}\t{percentile(ms, 99):.1f}\t{(ms[-1] if ms else float('nan')):.1f}"
            )
    lines.append(f"command\t{' '.join(command[:2])}\t\t\texit {proc.returncode}\t\t\t{load_seconds * 1000:.0f}")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
