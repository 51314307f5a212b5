#!/usr/bin/env bash
# Where the CPU goes: system-wide `perf record` of (1) coinflow-etl loading a 1 M-row
# markets file with its rankings file and (2) coinflow-api serving /read/next-chunk?size=1000 to wrk at
# concurrency 16. Writes $BENCH_RESULTS/profile-etl.txt and profile-api.txt (CPU share
# per process, then the hottest symbols of the coinflow process and of postgres).
#
# Usage: bench/profile.sh        (needs perf; a throwaway cluster unless DATABASE_URL)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

command -v perf >/dev/null || cf_die "perf not found (apt-get install linux-perf)"
bench_need_tools
bench_need_binaries
BIN=$(bench_bin_dir)
if [[ -z ${BENCH_WORK_DIR:-} ]]; then
    BENCH_WORK_DIR=$(bench_pick_work 2000000)
    export BENCH_WORK_DIR
fi
export TMPDIR=$BENCH_WORK_DIR
pg_ensure_database_url
work=$(mktemp -d "$BENCH_WORK_DIR/profile.XXXXXX")
cf_at_exit "rm -rf '$work'"

"$BIN/coinflow-etl" generate --coins 1000 --days 42 --people 10 --seed 42 --out "$work/gen" >/dev/null
mkdir -p "$work/data"
mv "$work/gen/coins.csv" "$work/gen/markets.csv" "$work/gen/rankings.csv" "$work/data/"
bench_fresh_db cfbench_profile
url=$(bench_db_url cfbench_profile)

summarise() { # perf.data out-file process-name [pid]
    local data=$1 out=$2 proc=$3 pid=${4:-}
    {
        echo "== CPU samples per thread name (all CPUs; coinflow-api's threads are rocket-worker-*, tokio-*) =="
        perf report -i "$data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' | head -n 12 || true
        for comm in "$proc" postgres; do
            echo
            echo "== hottest symbols in $comm (self time, % of all samples) =="
            local filter=(--comm "$comm")
            [[ $comm == "$proc" && -n $pid ]] && filter=(--pid "$pid")
            perf report -i "$data" --no-children -g none "${filter[@]}" --sort dso,symbol --stdio 2>/dev/null |
                grep -E '^ +[0-9.]+%' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' | cut -c1-160 | head -n 25 || true
        done
    } >"$out"
}

cf_log "profiling coinflow-etl run (1 M rows)"
DATABASE_URL=$url perf record -a -g -F 199 -o "$work/etl.data" -- \
    "$BIN/coinflow-etl" run --data-dir "$work/data" >"$work/etl.log" 2>&1
summarise "$work/etl.data" "$BENCH_RESULTS/profile-etl.txt" coinflow-etl

cf_log "profiling coinflow-api under wrk (next-chunk size=1000, c=16)"
port=$(pg_free_port)
DATABASE_URL=$url API_PORT=$port API_ADDRESS=127.0.0.1 CURSOR_SECRET=coinflow-bench-secret-32-bytes-or-more \
    "$BIN/coinflow-api" >"$work/api.log" 2>&1 &
api_pid=$!
cf_at_exit "kill $api_pid 2>/dev/null || true"
for _ in $(seq 1 60); do
    curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
    sleep 0.5
done
cursor=$(curl -fs "http://127.0.0.1:$port/read/first-chunk?size=1000" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["next_cursor"])')
wrk -t 2 -c 16 -d 3s "http://127.0.0.1:$port/read/next-chunk?cursor=$cursor" >/dev/null
perf record -a -g -F 199 -o "$work/api.data" -- \
    wrk -t 2 -c 16 -d 15s --latency "http://127.0.0.1:$port/read/next-chunk?cursor=$cursor" >"$work/wrk.txt" 2>&1
summarise "$work/api.data" "$BENCH_RESULTS/profile-api.txt" coinflow-api "$api_pid"
{
    echo
    echo "== wrk under perf =="
    cat "$work/wrk.txt"
} >>"$BENCH_RESULTS/profile-api.txt"
bench_psql "$DATABASE_URL" -c "DROP DATABASE cfbench_profile" 2>/dev/null || true
cf_log "wrote $BENCH_RESULTS/profile-etl.txt and profile-api.txt"
