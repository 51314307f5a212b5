#!/usr/bin/env bash
# The whole benchmark suite: ETL against psql \copy and pgloader at each size, then the
# API against pgbench on the largest loaded size, then BENCHMARKS.md.
#
# Usage: bench/run.sh
# Env:   BENCH_SIZES       sizes to load (default "1m 10m"; also 100k, 50m)
#        BENCH_API_SIZE    size whose database the API benchmark uses (default: the
#                          largest of BENCH_SIZES)
#        BENCH_SKIP_API=1  ETL only
#        BENCH_SKIP_DURING_LOAD=1  no "reads during a load" scenario (bench/during_load.sh)
#        BENCH_DURATION    seconds per wrk/pgbench measurement (default 15)
#        BENCH_REPS        repetitions of every timed row, ETL and API (default 3)
#        BENCH_SCALE_SIZES sizes measured with coinflow-etl only (default 50m)
#        DATABASE_URL      use this server (databases cfbench_* are created and dropped)
#                          instead of a throwaway cluster
#        BENCH_WORK        scratch directory (default: $TMPDIR or /tmp, else /dev/shm)
#        COINFLOW_BIN      directory holding coinflow-etl and coinflow-api (default: the
#                          release build in $CARGO_TARGET_DIR or target/)
#        BENCH_BUILD=1     run `cargo build --release --bins` first
#        BENCH_PROFILE=1   also run bench/profile.sh (perf) at the end
#        BENCH_OUTPUT      where the report goes (default: BENCHMARKS.md at the root)
#        BENCH_RESULTS     raw results directory (default: bench/results, emptied first)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

read -r -a sizes <<<"${BENCH_SIZES:-1m 10m}"
export BENCH_REPS=${BENCH_REPS:-3}
api_size=${BENCH_API_SIZE:-${sizes[-1]}}

bench_need_tools
bench_need_binaries

largest=0
for s in "${sizes[@]}"; do
    r=$(bench_rows "$s")
    ((r > largest)) && largest=$r
done
BENCH_WORK_DIR=$(bench_pick_work $((largest * 700 / 1024)))
export BENCH_WORK_DIR
export TMPDIR=$BENCH_WORK_DIR
cf_log "scratch data in $BENCH_WORK_DIR ($(df -PT "$BENCH_WORK_DIR" | awk 'NR==2 {print $2}'))"
pg_ensure_database_url

rm -rf "$BENCH_RESULTS"
mkdir -p "$BENCH_RESULTS"
bench_machine_info "$BENCH_RESULTS/machine.tsv"
printf 'loadavg_start\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$BENCH_RESULTS/machine.tsv"
printf 'sizes\t%s\napi_size\t%s\nreps\t%s\nduration\t%s\nconcurrency\t%s\n' "${sizes[*]}" "$api_size" "$BENCH_REPS" \
    "${BENCH_DURATION:-15}" "${BENCH_CONCURRENCY:-1 16 64}" >>"$BENCH_RESULTS/machine.tsv"
started=$(date +%s)
# Other work on the machine skews every number: sample the load and the busiest
# processes every 5 s for the report.
(while sleep 5; do
    echo "$(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg) | $(ps -eo pcpu=,comm= --sort=-pcpu | head -n 4 | awk '{printf "%s:%s ", $2, $1}')"
done) >"$BENCH_RESULTS/loadavg.log" 2>&1 &
sampler=$!
cf_at_exit "kill $sampler 2>/dev/null || true"

BENCH_KEEP_DB=$api_size "$BENCH_DIR/etl.sh" "${sizes[@]}"
if [[ ${BENCH_SKIP_API:-0} != 1 ]]; then
    "$BENCH_DIR/api.sh" "cfbench_etl_$api_size"
    if [[ ${BENCH_SKIP_DURING_LOAD:-0} != 1 ]]; then
        "$BENCH_DIR/during_load.sh" "cfbench_etl_$api_size" || cf_log "warning: bench/during_load.sh failed (see $BENCH_RESULTS/during-load-*.log)"
    fi
fi
bench_psql "$DATABASE_URL" -c "DROP DATABASE IF EXISTS cfbench_etl_$api_size"
rm -rf "$BENCH_WORK_DIR/data-$api_size"

# Scaling points beyond the compared sizes: coinflow-etl only, when the disk allows.
for s in ${BENCH_SCALE_SIZES-50m}; do
    need_kb=$(($(bench_rows "$s") * 700 / 1024))
    avail_kb=$(df -Pk "$BENCH_WORK_DIR" | awk 'NR==2 {print $4}')
    if ((avail_kb > need_kb)); then
        BENCH_ETL_ONLY=$s "$BENCH_DIR/etl.sh" "$s"
        printf 'scale_size\t%s: measured (coinflow-etl only)\n' "$s" >>"$BENCH_RESULTS/machine.tsv"
    else
        cf_log "skipping $s: $((avail_kb / 1048576)) GiB free in $BENCH_WORK_DIR, about $((need_kb / 1048576)) GiB needed"
        printf 'scale_size\t%s: skipped, %s GiB free, about %s GiB needed\n' "$s" "$((avail_kb / 1048576))" "$((need_kb / 1048576))" >>"$BENCH_RESULTS/machine.tsv"
    fi
done

if [[ ${BENCH_PROFILE:-0} == 1 ]]; then
    "$BENCH_DIR/profile.sh" || cf_log "warning: bench/profile.sh failed"
fi

printf 'loadavg_end\t%s\nsuite_seconds\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$(($(date +%s) - started))" >>"$BENCH_RESULTS/machine.tsv"
out=${BENCH_OUTPUT:-$REPO_DIR/BENCHMARKS.md}
python3 "$BENCH_DIR/report.py" "$BENCH_RESULTS" >"$out"
cf_log "wrote $out (raw results in $BENCH_RESULTS)"
