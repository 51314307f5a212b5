#!/usr/bin/env bash
# Reads during a load (issue 11 item 2): the API serves chunk reads, cold /top and
# POST /runtasks at concurrency 16 each, first idle, then while coinflow-etl loads new
# market rows into the same database (bench/during_load.py). The server logs every lock
# wait over 50 ms (log_lock_waits, deadlock_timeout = 50ms); the API's connections are
# told apart by their application_name.
#
# Usage: bench/during_load.sh DATABASE_NAME     (a database loaded by bench/etl.sh)
# Env:   BENCH_LOAD_ROWS   new market rows to load (default: a tenth of the table)
#        BENCH_IDLE_SECONDS  length of the idle phase (default 20)
# Writes $BENCH_RESULTS/during-load.tsv, during-load-lock-waits.txt and
# during-load-etl.log.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

db=${1:?usage: bench/during_load.sh DATABASE_NAME}
[[ -n ${DATABASE_URL:-} ]] || cf_die "set DATABASE_URL to the server that holds $db (bench/run.sh does)"
bench_need_binaries
BIN=$(bench_bin_dir)
url=$(bench_db_url "$db")
work=$(mktemp -d "${BENCH_WORK_DIR:-${TMPDIR:-/tmp}}/during-load.XXXXXX")
cf_at_exit "rm -rf '$work'"

rows=$(bench_psql "$url" -Atc "SELECT count(*) FROM market")
coins=$(bench_psql "$url" -Atc "SELECT count(*) FROM coins")
days=$(bench_psql "$url" -Atc "SELECT ceil(extract(epoch FROM max(ts) - min(ts)) / 86400)::int + 1 FROM market")
last=$(bench_psql "$url" -Atc "SELECT to_char(max(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM market")
first=$(bench_psql "$url" -Atc "SELECT to_char(min(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM market")
want=${BENCH_LOAD_ROWS:-$((rows / 10))}
bench_psql "$url" -Atc "SELECT id FROM coins ORDER BY id" >"$work/coin-ids.txt"

# New rows: the same generator over more days; only the snapshots after the stored ones.
extra=$(((want + coins * 24 - 1) / (coins * 24)))
"$BIN/coinflow-etl" generate --coins "$coins" --days $((days + extra)) --people 1 --seed 42 --out "$work/gen" >/dev/null
mkdir -p "$work/data"
awk -F, -v last="$last" -v want="$want" 'NR == 1 { print; next } $2 > last && n < want { print; n++ }' \
    "$work/gen/markets.csv" >"$work/data/markets.csv"
rm -rf "$work/gen"
new_rows=$(($(wc -l <"$work/data/markets.csv") - 1))
cf_log "during-load: $new_rows new market rows into $rows stored ($db)"

# Lock waits over 50 ms go to the server log, with the waiting session's application.
bench_psql "$DATABASE_URL" -c "ALTER SYSTEM SET log_lock_waits = on" \
    -c "ALTER SYSTEM SET deadlock_timeout = '50ms'" \
    -c "ALTER SYSTEM SET log_line_prefix = '%m [%p] %a '" -c "SELECT pg_reload_conf()" >/dev/null
cf_at_exit "bench_psql '$DATABASE_URL' -c 'ALTER SYSTEM RESET log_lock_waits' -c 'ALTER SYSTEM RESET deadlock_timeout' -c 'ALTER SYSTEM RESET log_line_prefix' -c 'SELECT pg_reload_conf()' >/dev/null 2>&1"
log=${PG_CLUSTER_DIR:+$PG_CLUSTER_DIR/server.log}
offset=0
[[ -n $log && -f $log ]] && offset=$(stat -c %s "$log")

port=$(pg_free_port)
base="http://127.0.0.1:$port"
task_dir=$(mktemp -d)
cf_at_exit "rm -rf '$task_dir'"
sep='?'
[[ $url == *\?* ]] && sep='&'
DATABASE_URL="${url}${sep}application_name=coinflow-api" API_PORT=$port API_ADDRESS=127.0.0.1 \
    CURSOR_SECRET=coinflow-bench-secret-32-bytes-or-more TASK_OUTPUT_DIR=$task_dir \
    "$BIN/coinflow-api" >"$BENCH_RESULTS/during-load-api.log" 2>&1 &
api_pid=$!
cf_at_exit "kill $api_pid 2>/dev/null || true"
for _ in $(seq 1 120); do
    curl -fs "$base/health/ready" >/dev/null 2>&1 && break
    kill -0 "$api_pid" 2>/dev/null || cf_die "coinflow-api exited (see $BENCH_RESULTS/during-load-api.log)"
    sleep 0.5
done

etl_cmd=(env "DATABASE_URL=$url" "$BIN/coinflow-etl" run --data-dir "$work/data" --summary "$BENCH_RESULTS/during-load-summary.json")
echo "during-load: $(printf '%q ' "${etl_cmd[@]}")" >>"$BENCH_RESULTS/etl-commands.txt"
status=0
python3 "$BENCH_DIR/during_load.py" "$base" "$first" "$last" "$work/coin-ids.txt" \
    --idle-seconds "${BENCH_IDLE_SECONDS:-20}" --out "$BENCH_RESULTS/during-load.tsv" \
    -- bash -c "$(printf '%q ' "${etl_cmd[@]}") >'$BENCH_RESULTS/during-load-etl.log' 2>&1" || status=$?

{
    printf 'database\t%s\nstored_rows\t%s\nnew_rows\t%s\n' "$db" "$rows" "$new_rows"
    if [[ -n $log && -f $log ]]; then
        waits=$(tail -c +$((offset + 1)) "$log" | grep -c 'still waiting for' || true)
        # Two task runs on coins of one bucket wait for each other on purpose (one task
        # run per coin at a time, an advisory lock per bucket): counted apart from waits
        # on table or row locks, which a load could cause.
        api_waits=$(tail -c +$((offset + 1)) "$log" | grep 'still waiting for' | grep ' coinflow-api ' | grep -vc 'advisory lock' || true)
        task_waits=$(tail -c +$((offset + 1)) "$log" | grep 'still waiting for' | grep ' coinflow-api ' | grep -c 'advisory lock' || true)
        printf 'lock_waits_over_50ms\t%s\napi_lock_waits_over_50ms\t%s\napi_task_lock_waits_over_50ms\t%s\n' "$waits" "$api_waits" "$task_waits"
        tail -c +$((offset + 1)) "$log" | grep -A1 'still waiting for' >"$BENCH_RESULTS/during-load-lock-waits.txt" || true
    else
        printf 'lock_waits_over_50ms\tnot read (no server log of a throwaway cluster)\n'
    fi
} >"$BENCH_RESULTS/during-load-info.tsv"
cat "$BENCH_RESULTS/during-load-info.tsv" >&2
exit "$status"
