#!/usr/bin/env bash
# ETL benchmark: for each size, generate a markets file with `coinflow-etl generate` and
# time, on the same server in the same run:
#   - psql \copy into an unindexed table
#   - psql \copy into a table with market's primary key (coin_id, ts)
#   - psql \copy into a table with all of market's indexes (PK, ts, partial rank index)
#   - pgloader (defaults: 2 workers, 25 000-row batches) into the PK table
#   - coinflow-etl run, end to end, into a fresh database (migrations, COPY into staging,
#     classify/merge, derived tables, ledger)
#   - coinflow-etl run again on the unchanged directory
# Appends one line per measurement to $BENCH_RESULTS/etl.tsv.
#
# Usage: bench/etl.sh [SIZE...]     sizes: 100k 1m 10m 50m (default: 1m 10m)
# Env:   DATABASE_URL (else a throwaway cluster), BENCH_WORK, BENCH_KEEP_DB=<size> keeps
#        that size's coinflow database (cfbench_etl_<size>) and data for bench/api.sh,
#        BENCH_ETL_ONLY="<size>..." runs only coinflow-etl for those sizes (scaling points:
#        pgloader alone would take ~20 minutes at 50 M rows).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

sizes=("$@")
((${#sizes[@]})) || sizes=(1m 10m)

bench_need_tools
bench_need_binaries
BIN=$(bench_bin_dir)

# Room for the largest size: CSV (~70 B/row) plus tables, indexes, staging and WAL.
largest=0
for s in "${sizes[@]}"; do
    r=$(bench_rows "$s")
    ((r > largest)) && largest=$r
done
if [[ -z ${BENCH_WORK_DIR:-} ]]; then
    BENCH_WORK_DIR=$(bench_pick_work $((largest * 700 / 1024)))
    export BENCH_WORK_DIR
fi
cf_log "scratch data in $BENCH_WORK_DIR"
# A throwaway cluster goes there too.
export TMPDIR=$BENCH_WORK_DIR
pg_ensure_database_url

TSV=$BENCH_RESULTS/etl.tsv
[[ -f $TSV ]] || printf 'size\trows\ttool\twall_s\trows_per_s\tpeak_rss_kb\tstatus\tnote\n' >"$TSV"
SLOW=$BENCH_RESULTS/etl-slow-statements.txt
CMDS=$BENCH_RESULTS/etl-commands.txt

record() { # size rows tool wall rss status note
    local rps
    rps=$(awk -v r="$2" -v w="$4" 'BEGIN { if (w > 0) printf "%d", r / w; else print "" }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$rps" "$5" "$6" "$7" >>"$TSV"
    cf_log "$1 $3: $4 s, $rps rows/s, peak RSS $5 KB ($6) $7"
}

server_log() {
    [[ -n ${PG_CLUSTER_DIR:-} && -f $PG_CLUSTER_DIR/server.log ]] && echo "$PG_CLUSTER_DIR/server.log"
}

cmp_url=$(bench_db_url cfbench_cmp)
COLS="coin_id, ts, price_usd, market_cap_usd, volume_24h_usd"
TABLE_DEF="coin_id text NOT NULL, ts timestamptz NOT NULL, price_usd float8, market_cap_usd float8, volume_24h_usd float8, rank int, rank_source text"

for size in "${sizes[@]}"; do
    read -r coins days <<<"$(bench_shape "$size")"
    rows=$(bench_rows "$size")
    gen=$BENCH_WORK_DIR/gen-$size
    data=$BENCH_WORK_DIR/data-$size
    csv=$data/markets.csv

    # 1. Generate (deterministic: same seed, same bytes).
    rm -rf "$gen" "$data"
    tf=$(mktemp)
    gen_cmd=("$BIN/coinflow-etl" generate --coins "$coins" --days "$days" --people 10 --seed 42 --out "$gen")
    bench_timed "$tf" "$BENCH_RESULTS/generate-$size.log" "${gen_cmd[@]}" || cf_die "generate failed (see $BENCH_RESULTS/generate-$size.log)"
    read -r wall rss <<<"$(bench_parse_time "$tf")"
    record "$size" "$rows" "coinflow-etl generate (all six files)" "$wall" "$rss" ok "--coins $coins --days $days"
    # Only coins + markets are loaded; the rankings file (as large as markets) is not needed.
    rm -f "$gen/rankings.csv"
    mkdir -p "$data"
    mv "$gen/coins.csv" "$gen/markets.csv" "$data/"
    csv_lines=$(($(wc -l <"$csv") - 1))
    [[ $csv_lines == "$rows" ]] || cf_log "warning: markets.csv has $csv_lines rows, expected $rows"
    rows=$csv_lines
    csv_mb=$(du -m "$csv" | cut -f1)
    printf '%s\tcsv_mb\t%s\n' "$size" "$csv_mb" >>"$BENCH_RESULTS/etl-sizes.tsv"

    # 2. psql \copy into unindexed / PK / full-index tables, and pgloader into the PK table.
    compare=1
    for only in ${BENCH_ETL_ONLY:-}; do
        [[ $only == "$size" ]] && compare=0
    done
    if ((compare)); then
        bench_fresh_db cfbench_cmp
        run_copy() { # tool-label table-ddl-suffix
            local label=$1 extra=$2 n
            bench_psql "$cmp_url" -c "DROP TABLE IF EXISTS bench_market" -c "CREATE TABLE bench_market ($TABLE_DEF$extra)"
            [[ $label == *"all market indexes"* ]] &&
                bench_psql "$cmp_url" -c "CREATE INDEX ON bench_market (ts)" -c "CREATE INDEX ON bench_market (coin_id) WHERE rank IS NOT NULL"
            bench_checkpoint
            local cmd=(psql -X -q -v ON_ERROR_STOP=1 "$cmp_url" -c "\\copy bench_market ($COLS) FROM '$csv' WITH (FORMAT csv, HEADER true)")
            echo "[$size] $label: $(printf "%q " "${cmd[@]}")" >>"$CMDS"
            local status=ok
            bench_timed "$tf" "$BENCH_RESULTS/copy.log" "${cmd[@]}" || status="exit $?"
            read -r wall rss <<<"$(bench_parse_time "$tf")"
            n=$(bench_psql "$cmp_url" -Atc "SELECT count(*) FROM bench_market")
            [[ $n == "$rows" ]] || status="$status; $n rows loaded"
            record "$size" "$rows" "$label" "$wall" "$rss" "$status" ""
            bench_psql "$cmp_url" -c "DROP TABLE bench_market"
        }
        run_copy 'psql \copy, unindexed table' ''
        run_copy 'psql \copy, PRIMARY KEY (coin_id, ts)' ', PRIMARY KEY (coin_id, ts)'
        run_copy 'psql \copy, all market indexes' ', PRIMARY KEY (coin_id, ts)'

        bench_psql "$cmp_url" -c "CREATE TABLE bench_market ($TABLE_DEF, PRIMARY KEY (coin_id, ts))"
        load=$BENCH_WORK_DIR/pgloader-$size.load
        cat >"$load" <<EOF
LOAD CSV
     FROM '$csv' ($COLS)
     INTO $cmp_url
     TARGET TABLE bench_market
     TARGET COLUMNS ($COLS)
     WITH skip header = 1,
          fields terminated by ',';
EOF
        bench_checkpoint
        echo "[$size] pgloader: pgloader $load  # $(tr '\n' ' ' <"$load")" >>"$CMDS"
        status=ok
        bench_timed "$tf" "$BENCH_RESULTS/pgloader-$size.log" pgloader "$load" || status="exit $?"
        read -r wall rss <<<"$(bench_parse_time "$tf")"
        n=$(bench_psql "$cmp_url" -Atc "SELECT count(*) FROM bench_market")
        [[ $n == "$rows" ]] || status="$status; $n rows loaded"
        record "$size" "$rows" "pgloader, PRIMARY KEY (coin_id, ts)" "$wall" "$rss" "$status" ""
        bench_psql "$DATABASE_URL" -c "DROP DATABASE cfbench_cmp"
    fi

    # 3. coinflow-etl end to end into a fresh database, then again on unchanged files.
    db=cfbench_etl_$size
    bench_fresh_db "$db"
    # Statements slower than 250 ms go to the server log (evidence for the reading).
    bench_psql "$DATABASE_URL" -c "ALTER DATABASE \"$db\" SET log_min_duration_statement = 250" 2>/dev/null || true
    log=$(server_log || true)
    offset=0
    [[ -n $log ]] && offset=$(stat -c %s "$log")
    bench_checkpoint
    etl_url=$(bench_db_url "$db")
    cmd=("$BIN/coinflow-etl" run --data-dir "$data" --summary "$BENCH_RESULTS/etl-summary-$size.json")
    echo "[$size] coinflow-etl: DATABASE_URL=$etl_url ${cmd[*]}" >>"$CMDS"
    status=ok
    DATABASE_URL=$etl_url bench_timed "$tf" "$BENCH_RESULTS/etl-run-$size.log" "${cmd[@]}" || status="exit $?"
    read -r wall rss <<<"$(bench_parse_time "$tf")"
    n=$(bench_psql "$etl_url" -Atc "SELECT count(*) FROM market")
    [[ $n == "$rows" ]] || status="$status; $n rows in market"
    phases=$(grep -oE '(markets\.csv: markets loaded.* in [0-9.]+s|derived tables refreshed in [0-9.]+s)' "$BENCH_RESULTS/etl-run-$size.log" |
        sed -E 's/markets\.csv: markets loaded.* in ([0-9.]+s)/markets.csv \1/; s/derived tables refreshed in/derived/' | paste -sd ';' -)
    record "$size" "$rows" "coinflow-etl run (end to end)" "$wall" "$rss" "$status" "$phases"
    if [[ -n $log ]]; then
        {
            echo "== $size: statements over 250 ms during coinflow-etl run (server log) =="
            tail -c +$((offset + 1)) "$log" | grep -E 'duration: [0-9.]+ ms' | sed -E 's/^.*(duration: )/\1/' | cut -c1-400
        } >>"$SLOW"
    fi
    bench_psql "$DATABASE_URL" -c "ALTER DATABASE \"$db\" RESET log_min_duration_statement" 2>/dev/null || true

    cmd=("$BIN/coinflow-etl" run --data-dir "$data")
    echo "[$size] coinflow-etl re-run: DATABASE_URL=$etl_url ${cmd[*]}" >>"$CMDS"
    status=ok
    DATABASE_URL=$etl_url bench_timed "$tf" "$BENCH_RESULTS/etl-rerun-$size.log" "${cmd[@]}" || status="exit $?"
    read -r wall rss <<<"$(bench_parse_time "$tf")"
    record "$size" "$rows" "coinflow-etl run (unchanged re-run)" "$wall" "$rss" "$status" ""
    printf '%s\tdb_mb\t%s\n' "$size" "$(bench_psql "$etl_url" -Atc "SELECT pg_database_size(current_database()) / 1048576")" >>"$BENCH_RESULTS/etl-sizes.tsv"

    if [[ ${BENCH_KEEP_DB:-} == "$size" ]]; then
        # The API benchmark wants exchanges for POST /runtasks: add the tickers file.
        mv "$gen/tickers.csv" "$data/"
        DATABASE_URL=$etl_url "$BIN/coinflow-etl" run --data-dir "$data" >"$BENCH_RESULTS/etl-tickers-$size.log" 2>&1 ||
            cf_log "warning: loading tickers.csv failed (see $BENCH_RESULTS/etl-tickers-$size.log)"
        rm -rf "$gen"
    else
        bench_psql "$DATABASE_URL" -c "DROP DATABASE \"$db\""
        rm -rf "$gen" "$data"
    fi
    rm -f "$tf"
done
