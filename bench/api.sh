#!/usr/bin/env bash
# API benchmark: wrk against coinflow-api and pgbench running the statements the handler
# runs (bench/pgbench/*.sql, captured from the server log with log_statement=all), at
# the same concurrency, on a database loaded by bench/etl.sh.
#
# /top is measured cold (bench/top_cold.py: distinct random instants over the whole
# history, never repeated in the run, so every request computes its ranking) and warm
# (one instant asked again and again: cache hits), at limit 200 and 5000.
#
# Usage: bench/api.sh DATABASE_NAME          (e.g. cfbench_etl_10m, on $DATABASE_URL's server)
# Env:   BENCH_DURATION (seconds per measurement, default 15), BENCH_CONCURRENCY
#        (default "1 16 64"), BENCH_REPS (repetitions of every row, default 3),
#        BENCH_COLD_REQUESTS (requests per cold /top row, default 800), API_POOL_SIZE
#        (passed to the API; its default is 16).
# Appends one line per measurement and repetition to $BENCH_RESULTS/api.tsv.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

db=${1:?usage: bench/api.sh DATABASE_NAME}
[[ -n ${DATABASE_URL:-} ]] || cf_die "set DATABASE_URL to the server that holds $db (bench/run.sh does)"
bench_need_tools
bench_need_binaries
BIN=$(bench_bin_dir)
DURATION=${BENCH_DURATION:-15}
REPS=${BENCH_REPS:-3}
COLD_REQUESTS=${BENCH_COLD_REQUESTS:-800}
read -r -a CONC <<<"${BENCH_CONCURRENCY:-1 16 64}"
url=$(bench_db_url "$db")
work=$(mktemp -d "${BENCH_WORK_DIR:-${TMPDIR:-/tmp}}/api-bench.XXXXXX")
cf_at_exit "rm -rf '$work'"

TSV=$BENCH_RESULTS/api.tsv
[[ -f $TSV ]] || printf 'endpoint\tconcurrency\ttool\trep\treq_per_s\tp50_ms\tp99_ms\terrors\tload1\n' >"$TSV"
CMDS=$BENCH_RESULTS/api-commands.txt
: >"$CMDS"

# --- a settled database -----------------------------------------------------------------
# A fresh 10 M-row load leaves every page for autovacuum to visit (hint bits, the
# visibility map). Left to itself that worker runs for minutes in the middle of whichever
# endpoints come first, and the rows it overlaps are not comparable with the others.
# Vacuum once before measuring, for the API and pgbench alike.
vacuum_started=$(date +%s.%N)
bench_psql "$url" -c "VACUUM (ANALYZE)"
vacuum_seconds=$(awk -v s="$vacuum_started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
cf_log "VACUUM (ANALYZE) of $db in $vacuum_seconds s"

# --- the API --------------------------------------------------------------------------
port=$(pg_free_port)
base="http://127.0.0.1:$port"
CURSOR_SECRET=coinflow-bench-secret-32-bytes-or-more
# POST /runtasks is measured with task files on, as docker-compose.yml deploys the API
# (TASK_OUTPUT_DIR set; its bounds TASK_OUTPUT_MAX_* at their defaults).
task_dir=$(mktemp -d)
cf_at_exit "rm -rf '$task_dir'"
DATABASE_URL=$url API_PORT=$port API_ADDRESS=127.0.0.1 CURSOR_SECRET=$CURSOR_SECRET \
    TASK_OUTPUT_DIR=$task_dir "$BIN/coinflow-api" >"$BENCH_RESULTS/api-server.log" 2>&1 &
api_pid=$!
cf_at_exit "kill $api_pid 2>/dev/null || true"
for _ in $(seq 1 120); do
    curl -fs "$base/health/ready" >/dev/null 2>&1 && break
    kill -0 "$api_pid" 2>/dev/null || cf_die "coinflow-api exited (see $BENCH_RESULTS/api-server.log)"
    sleep 0.5
done
curl -fs "$base/health/ready" >/dev/null || cf_die "coinflow-api not ready after 60 s"
cf_log "coinflow-api (pid $api_pid) ready on $base against $db"

json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]] or "")' "$1"; }
# The sort key inside a cursor (payload = base64url JSON before the dot), comma-separated.
cursor_key() {
    python3 - "$1" <<'EOF'
import base64, json, sys
payload = sys.argv[1].split(".")[0]
doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
keys = [v for v in doc.values() if isinstance(v, list)]
print("\t".join(keys[0]))
EOF
}

last_coin=$(bench_psql "$url" -Atc "SELECT max(coin_id) FROM market")
latest=$(bench_psql "$url" -Atc "SELECT to_char(max(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM market")
hist_first=$(bench_psql "$url" -Atc "SELECT to_char(min(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM market")
read -r us0 us1 <<<"$(bench_psql "$url" -F ' ' -Atc "SELECT (extract(epoch FROM min(ts)) * 1000000)::int8, (extract(epoch FROM max(ts)) * 1000000)::int8 FROM market")"
historical=$(bench_psql "$url" -Atc "SELECT to_char(date_trunc('hour', min(ts) + (max(ts) - min(ts)) / 2) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM market")
bench_psql "$url" -c "DROP TABLE IF EXISTS bench_coin_ids" \
    -c "CREATE TABLE bench_coin_ids AS SELECT row_number() OVER (ORDER BY id)::int AS i, id FROM coins" \
    -c "ALTER TABLE bench_coin_ids ADD PRIMARY KEY (i)"
ncoins=$(bench_psql "$url" -Atc "SELECT count(*) FROM bench_coin_ids")
bench_psql "$url" -Atc "SELECT id FROM bench_coin_ids ORDER BY i" >"$work/coin-ids.txt"
rows=$(bench_psql "$url" -Atc "SELECT count(*) FROM market")
printf 'db\t%s\nmarket_rows\t%s\ncoins\t%s\nlast_coin\t%s\nfirst\t%s\nlatest\t%s\nhistorical\t%s\ntop_slots_rows\t%s\nranked_rows\t%s\n' \
    "$db" "$rows" "$ncoins" "$last_coin" "$hist_first" "$latest" "$historical" \
    "$(bench_psql "$url" -Atc "SELECT count(*) FROM top_slots")" \
    "$(bench_psql "$url" -Atc "SELECT count(*) FROM market WHERE rank IS NOT NULL")" >"$BENCH_RESULTS/api-data.tsv"

# A cursor deep in the table (at 90 % of market in key order): the first chunk's cursor
# with the key of that row, signed with the API's CURSOR_SECRET (the bench set it).
deep_row=$((rows * 9 / 10))
deep_key=$(bench_psql "$url" -F $'\t' -Atc "SELECT coin_id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM market ORDER BY coin_id, ts OFFSET $deep_row LIMIT 1")
forge_cursor() { # cursor coin ts
    python3 - "$1" "$2" "$3" "$CURSOR_SECRET" <<'PY'
import base64, hashlib, hmac, json, sys
token, coin, ts, secret = sys.argv[1:]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
payload = token.split(".")[0]
doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
doc["k"] = [coin, ts]
raw = json.dumps(doc, separators=(",", ":")).encode()
print(b64(raw) + "." + b64(hmac.new(secret.encode(), raw, hashlib.sha256).digest()))
PY
}

# Endpoints: name | wrk URL path | wrk lua (or -) | pgbench script | pgbench -D variables
endpoints=()
for size in 10 1000; do
    first=$(curl -fs "$base/read/first-chunk?size=$size" | json_field next_cursor)
    [[ -n $first ]] || cf_die "could not get a chunk cursor of size $size"
    IFS=$'\t' read -r k1 k2 <<<"$(cursor_key "$first")"
    endpoints+=("next-chunk size=$size, 2nd chunk|/read/next-chunk?cursor=$first|-|chunk.sql|-D k1=$k1 -D k2=$k2 -D size=$size -D lim=$((size + 1))")
    IFS=$'\t' read -r k1 k2 <<<"$deep_key"
    deep=$(forge_cursor "$first" "$k1" "$k2")
    got=$(curl -fs "$base/read/next-chunk?cursor=$deep" | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["data"]))' || echo 0)
    [[ $got == "$size" ]] || cf_die "the deep cursor of size $size gave $got rows (is CURSOR_SECRET the HMAC key?)"
    endpoints+=("next-chunk size=$size, deep (after row $deep_row)|/read/next-chunk?cursor=$deep|-|chunk.sql|-D k1=$k1 -D k2=$k2 -D size=$size -D lim=$((size + 1))")
done
# /top cold: path "cold:<limit>" runs bench/top_cold.py instead of wrk.
for lim in 200 5000; do
    endpoints+=("top limit=$lim, cold (distinct random instants)|cold:$lim|-|top-cold.sql|-D us0=$us0 -D us1=$us1 -D lim=$lim")
    endpoints+=("top limit=$lim, warm (one instant, cached: $historical)|/top?limit=$lim&datetime=$historical|-|top.sql|")
done
endpoints+=("POST /runtasks, 4 ids|/runtasks|runtasks.lua|runtasks.sql|-D ncoins=$ncoins")
# Baseline: Rocket, wrk and the kernel with no database work (no pgbench counterpart).
endpoints+=("baseline: GET /health/live (no database)|/health/live|-|-|")

# --- the statements each handler runs (evidence that the pgbench scripts match) ---------
if [[ -n ${PG_CLUSTER_DIR:-} && -f $PG_CLUSTER_DIR/server.log ]]; then
    log=$PG_CLUSTER_DIR/server.log
    bench_psql "$DATABASE_URL" -c "ALTER SYSTEM SET log_statement = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 0.5
    offset=$(stat -c %s "$log")
    for e in "${endpoints[@]}"; do
        IFS='|' read -r name path _ <<<"$e"
        if [[ $path == cold:* ]]; then
            # A cold request: an instant no measurement asks for (seconds :00.000001).
            curl -fs -o /dev/null "$base/top?limit=${path#cold:}&datetime=${historical%Z}.000001Z"
        elif [[ $path == /runtasks ]]; then
            curl -fs -o /dev/null -H 'Content-Type: application/json' \
                -d "{\"coins\":[\"$last_coin\",\"$(head -n 1 "$work/coin-ids.txt")\",\"no-such-coin\",\"$last_coin\"]}" "$base$path"
        else
            curl -fs -o /dev/null "$base$path"
        fi
        sleep 0.2
    done
    bench_psql "$DATABASE_URL" -c "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null
    tail -c +$((offset + 1)) "$log" | grep -v -E 'ALTER SYSTEM|pg_reload_conf' >"$BENCH_RESULTS/api-statements.log" || true
fi

# EXPLAIN ANALYZE of the heaviest statements, for the reading (/top's ranking runs once per
# instant, limit and data versions; the deep chunk's row statement runs per request).
{
    echo "== /top?limit=200 at $latest =="
    sed -e "s/:at/'$latest'::timestamptz/g" -e "s/:lim/200/g" "$BENCH_DIR/pgbench/top-query.sql" | grep -v -e '^--' -e '^$' |
        sed '1s/^/EXPLAIN (ANALYZE, BUFFERS) /' | bench_psql "$url" -At
    echo "== /top?limit=200 at $historical =="
    sed -e "s/:at/'$historical'::timestamptz/g" -e "s/:lim/200/g" "$BENCH_DIR/pgbench/top-query.sql" | grep -v -e '^--' -e '^$' |
        sed '1s/^/EXPLAIN (ANALYZE, BUFFERS) /' | bench_psql "$url" -At
    echo "== /top?limit=5000 at $historical =="
    sed -e "s/:at/'$historical'::timestamptz/g" -e "s/:lim/5000/g" "$BENCH_DIR/pgbench/top-query.sql" | grep -v -e '^--' -e '^$' |
        sed '1s/^/EXPLAIN (ANALYZE, BUFFERS) /' | bench_psql "$url" -At
    echo "== /read/next-chunk size=1000 after row $deep_row (the deep chunk) =="
    IFS=$'\t' read -r k1 k2 <<<"$deep_key"
    sed -e "s/:k1/'$k1'/g" -e "s/:k2/'$k2'/g" -e "s/:lim/1001/g" "$BENCH_DIR/pgbench/chunk.sql" | grep -v '^--' |
        sed '1s/^/EXPLAIN (ANALYZE, BUFFERS) /' | bench_psql "$url" -At
} >"$BENCH_RESULTS/api-explain.txt" 2>&1 || cf_log "warning: EXPLAIN failed (see api-explain.txt)"

# --- measurements ---------------------------------------------------------------------
to_ms() { # wrk latency like 812.00us, 1.23ms, 2.01s
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.2f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
        else print v }'
}

load1() { cut -d' ' -f1 /proc/loadavg; }

run_wrk() { # name path lua conc rep
    local name=$1 path=$2 lua=$3 c=$4 r=$5 t out l0
    t=$((c < 2 ? 1 : 2))
    # --timeout 30s: slow responses count in the latency, not as dropped requests.
    local cmd=(wrk -t "$t" -c "$c" -d "${DURATION}s" --timeout 30s --latency)
    [[ $lua != - ]] && cmd+=(-s "$BENCH_DIR/wrk/$lua")
    cmd+=("$base$path")
    [[ $lua != - ]] && cmd+=(-- "$work/coin-ids.txt")
    ((r == 1)) && echo "[$name, c=$c] $(printf '%q ' "${cmd[@]}")" >>"$CMDS"
    l0=$(load1)
    out=$("${cmd[@]}" 2>&1) || true
    echo "$out" >>"$BENCH_RESULTS/wrk.log"
    kill -0 "$api_pid" 2>/dev/null || cf_die "coinflow-api (pid $api_pid) is gone during '$name' (see $BENCH_RESULTS/api-server.log)"
    local rps p50 p99 non2xx sockerr
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    sockerr=$(awk '/Socket errors/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' <<<"$out")
    printf '%s\t%s\twrk (API)\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$r" "$rps" "$p50" "$p99" \
        "$((${non2xx:-0} + ${sockerr:-0}))" "$l0→$(load1)" >>"$TSV"
    cf_log "$name c=$c rep $r wrk: $rps req/s, p50 $p50 ms, p99 $p99 ms, errors $((${non2xx:-0} + ${sockerr:-0}))"
}

# Cold /top through the API: bench/top_cold.py, distinct random instants over the
# history (a new seed per row: no instant is asked twice in the run, see below).
cold_seed=0
run_cold() { # name limit conc rep
    local name=$1 lim=$2 c=$3 r=$4 out l0
    cold_seed=$((cold_seed + 1))
    local cmd=(python3 "$BENCH_DIR/top_cold.py" "$base" "$hist_first" "$latest" --limit "$lim"
        --requests "$COLD_REQUESTS" --concurrency "$c" --seed "$cold_seed" --instants-out "$work/cold-instants.txt")
    ((r == 1)) && echo "[$name, c=$c] $(printf '%q ' "${cmd[@]}")  # --seed differs per row" >>"$CMDS"
    l0=$(load1)
    out=$("${cmd[@]}" 2>&1) || true
    echo "$out" >>"$BENCH_RESULTS/top-cold.log"
    kill -0 "$api_pid" 2>/dev/null || cf_die "coinflow-api (pid $api_pid) is gone during '$name' (see $BENCH_RESULTS/api-server.log)"
    local rps p50 p99 non200
    rps=$(grep -oE 'rps=[0-9.]+' <<<"$out" | cut -d= -f2 || true)
    p50=$(grep -oE 'p50=[0-9.]+' <<<"$out" | cut -d= -f2 || true)
    p99=$(grep -oE 'p99=[0-9.]+' <<<"$out" | cut -d= -f2 || true)
    non200=$(grep -oE 'non200=[0-9]+' <<<"$out" | cut -d= -f2 || true)
    printf '%s\t%s\ttop_cold.py (API)\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$r" "${rps:-}" "${p50:-}" "${p99:-}" \
        "${non200:-?}" "$l0→$(load1)" >>"$TSV"
    cf_log "$name c=$c rep $r top_cold.py: $out"
}

run_pgbench() { # name script vars conc rep
    local name=$1 script=$2 vars=$3 c=$4 r=$5 j out logdir l0
    j=$((c < 2 ? 1 : 2))
    logdir=$(mktemp -d "$work/pgb.XXXXXX")
    local cmd=(pgbench -n -M prepared -f "$BENCH_DIR/pgbench/$script" -c "$c" -j "$j" -T "$DURATION" -l --log-prefix="$logdir/log")
    read -r -a extra <<<"$vars"
    cmd+=("${extra[@]}" "$url")
    ((r == 1)) && echo "[$name, c=$c] $(printf '%q ' "${cmd[@]}")" >>"$CMDS"
    l0=$(load1)
    out=$("${cmd[@]}" 2>&1) || true
    echo "$out" >>"$BENCH_RESULTS/pgbench.log"
    local tps failed p50 p99
    tps=$(awk '/^tps = / {printf "%.0f", $3}' <<<"$out")
    failed=$(awk '/number of failed transactions/ {print $5}' <<<"$out")
    read -r p50 p99 <<<"$(cat "$logdir"/log* | awk '{print $3}' | sort -n | awk '
        { v[NR] = $1 } END {
            if (NR == 0) { print "- -"; exit }
            i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
            printf "%.2f %.2f\n", v[i50] / 1000, v[i99] / 1000 }')"
    printf '%s\t%s\tpgbench\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$r" "$tps" "$p50" "$p99" "${failed:-?}" "$l0→$(load1)" >>"$TSV"
    cf_log "$name c=$c rep $r pgbench: $tps tps, p50 $p50 ms, p99 $p99 ms, failed ${failed:-?}"
    rm -rf "$logdir"
}

for e in "${endpoints[@]}"; do
    IFS='|' read -r name path lua script vars <<<"$e"
    # Warm-up (not recorded): the API's pool, prepared statements, the OS and database
    # caches. Cold /top rows warm up on other instants than they measure (a seed of
    # their own); warm rows fill the API cache with their instant here.
    if [[ $path == cold:* ]]; then
        python3 "$BENCH_DIR/top_cold.py" "$base" "$hist_first" "$latest" --limit "${path#cold:}" \
            --requests 100 --concurrency 4 --seed $((100000 + ${path#cold:})) --instants-out "$work/cold-instants.txt" >/dev/null 2>&1 || true
    else
        warm=(wrk -t 1 -c 4 -d 3s)
        [[ $lua != - ]] && warm+=(-s "$BENCH_DIR/wrk/$lua")
        warm+=("$base$path")
        [[ $lua != - ]] && warm+=(-- "$work/coin-ids.txt")
        "${warm[@]}" >/dev/null 2>&1 || true
    fi
    for c in "${CONC[@]}"; do
        for r in $(seq 1 "$REPS"); do
            [[ $path == /runtasks ]] && bench_psql "$url" -c "TRUNCATE task_results"
            if [[ $path == cold:* ]]; then
                run_cold "$name" "${path#cold:}" "$c" "$r"
            else
                run_wrk "$name" "$path" "$lua" "$c" "$r"
            fi
            [[ $path == /runtasks ]] && bench_psql "$url" -c "TRUNCATE task_results"
            [[ $script != - ]] && run_pgbench "$name" "$script" "$vars" "$c" "$r"
        done
    done
done

# The API's /top cache is keyed by instant (and limit): a cold row hits it only if an
# instant repeats. The API exposes no hit counter; count the repeats instead.
if [[ -f $work/cold-instants.txt ]]; then
    printf 'cold_instants\t%s\ncold_instants_distinct\t%s\n' "$(wc -l <"$work/cold-instants.txt")" \
        "$(sort -u "$work/cold-instants.txt" | wc -l)" >>"$BENCH_RESULTS/api-data.tsv"
fi

api_rss=$(awk '/VmHWM/ {print $2}' "/proc/$api_pid/status" 2>/dev/null || echo "?")
printf 'api_peak_rss_kb\t%s\nvacuum_seconds\t%s\n' "$api_rss" "$vacuum_seconds" >>"$BENCH_RESULTS/api-data.tsv"
bench_psql "$url" -c "TRUNCATE task_results" -c "DROP TABLE bench_coin_ids"
# The request log holds one line per request (hundreds of MB): keep what is not routine.
grep -v ' INFO ' "$BENCH_RESULTS/api-server.log" >"$BENCH_RESULTS/api-server-warnings.log" || true
rm -f "$BENCH_RESULTS/api-server.log"
