#!/usr/bin/env bash
# ETL benchmark. For each size, `coinflow-etl generate` writes coins.csv, markets.csv and
# rankings.csv (one ranking per snapshot, observed 1-30 s before it); every tool below
# loads those same three files, on the same server, BENCH_REPS times (default 3), each
# load into a fresh database with a CHECKPOINT before it:
#   - coinflow-etl run, end to end, then again on the unchanged directory
#   - psql \copy into unindexed tables (no keys): raw COPY speed
#   - psql \copy into tables with their primary keys (maintained row by row)
#   - psql \copy into coinflow's schema as migrated (keys, indexes, foreign keys per row)
#   - psql, one transaction: \copy into unindexed tables, then ADD PRIMARY KEY on each
#     (maintenance_work_mem 1GB, as coinflow-etl's bulk path sets it)
#   - psql, one transaction: coinflow's end state (migrations, \copy, the as-of rank join,
#     daily, top_slots, every key, index and foreign key: bench/sql/endstate-*.sql)
#   - pgloader (BENCH_PGLOADER_SETTINGS) reaching the same end state via AFTER LOAD EXECUTE
# After each load the end state is read back (market rows, ranked rows, daily rows,
# top_slots rows, indexes, foreign keys and, for the loads that aim at coinflow-etl's
# end state, a hash of the three tables' content in the first repetition) and compared
# with coinflow-etl's.
# Appends one line per measurement and repetition to $BENCH_RESULTS/etl.tsv.
#
# Usage: bench/etl.sh [SIZE...]     sizes: 100k 1m 10m 50m (default: 1m 10m)
# Env:   DATABASE_URL (else a throwaway cluster), BENCH_WORK, BENCH_REPS (default 3),
#        BENCH_KEEP_DB=<size> keeps that size's coinflow database (cfbench_etl_<size>) and
#        data for bench/api.sh, BENCH_ETL_ONLY="<size>..." runs only coinflow-etl for
#        those sizes (scaling points), BENCH_PGLOADER_SETTINGS: pgloader WITH options,
#        several settings separated by ';' each get a row (default below).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"

sizes=("$@")
((${#sizes[@]})) || sizes=(1m 10m)
REPS=${BENCH_REPS:-3}
# The best of the documented settings tried at 1 M rows on the 2-core machine (workers
# 2/4/8, concurrency 1/2, batch rows 25 000/50 000/100 000; see bench/README.md): the
# values pgloader documents as its defaults, stated explicitly.
PGLOADER_SETTINGS=${BENCH_PGLOADER_SETTINGS:-"workers = 8, concurrency = 1, batch rows = 25000, batch size = 20MB, prefetch rows = 100000"}

bench_need_tools
bench_need_binaries
BIN=$(bench_bin_dir)

# Room for the largest size: CSV (~140 B/row with rankings) plus tables, indexes, WAL.
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
[[ -f $TSV ]] || printf 'size\trows\ttool\trep\twall_s\trows_per_s\tpeak_rss_kb\tload1\tstatus\tend_state\tnote\n' >"$TSV"
SLOW=$BENCH_RESULTS/etl-slow-statements.txt
CMDS=$BENCH_RESULTS/etl-commands.txt
MIGRATIONS=("$REPO_DIR"/migrations/*/up.sql)

load1() { cut -d' ' -f1 /proc/loadavg; }

record() { # size rows tool rep wall rss load1 status end_state note
    local rps
    rps=$(awk -v r="$2" -v w="$5" 'BEGIN { if (w > 0) printf "%d", r / w; else print "" }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$rps" "$6" "$7" "$8" "$9" "${10}" >>"$TSV"
    cf_log "$1 $3 (rep $4): $5 s, $rps rows/s, peak RSS $6 KB, load $7 ($8) [$9] ${10}"
}

server_log() {
    [[ -n ${PG_CLUSTER_DIR:-} && -f $PG_CLUSTER_DIR/server.log ]] && echo "$PG_CLUSTER_DIR/server.log"
}

# What a load left in database $1, one line: rows of market, ranked rows, daily rows,
# top_slots rows, indexes (primary keys included) and foreign keys on those tables and
# rankings. A table that does not exist counts "-".
end_state() {
    local url=$1 t n out=""
    for t in market "market WHERE rank IS NOT NULL" daily top_slots; do
        if [[ $(bench_psql "$url" -Atc "SELECT to_regclass('${t%% *}') IS NOT NULL") == t ]]; then
            n=$(bench_psql "$url" -Atc "SELECT count(*) FROM $t")
        else
            n=-
        fi
        case $t in
        market) out+="market=$n" ;;
        market\ *) out+=" ranked=$n" ;;
        *) out+=" $t=$n" ;;
        esac
    done
    n=$(bench_psql "$url" -Atc "SELECT count(*) FROM pg_index WHERE indrelid::regclass::text IN ('market', 'rankings', 'daily', 'top_slots')")
    out+=" indexes=$n"
    n=$(bench_psql "$url" -Atc "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text IN ('market', 'rankings', 'daily', 'top_slots')")
    out+=" fks=$n"
    if [[ ${2:-} == content ]]; then
        # The content too, order-independent: a sum of row hashes per table (market,
        # daily but its avg_price, top_slots). avg_price is a floating-point mean whose
        # last digits depend on the order of the sum (at 100k, 9 of 4 200 rows differ
        # from coinflow-etl's in the 9th significant digit): it is left out.
        n=$(bench_psql "$url" -Atc "SELECT left(md5(concat_ws(',', (SELECT sum(hashtextextended(concat_ws('|', coin_id, ts, price_usd, market_cap_usd, volume_24h_usd, rank, rank_source), 0)) FROM market), (SELECT sum(hashtextextended(concat_ws('|', coin_id, day, open, high, low, close, max_market_cap_usd, last_volume_usd, samples, source), 0)) FROM daily), (SELECT sum(hashtextextended(concat_ws('|', bucket, coin_id, valid_from, valid_to, price_usd, market_cap_usd, volume_24h_usd, rank, rank_source), 0)) FROM top_slots))), 12)")
        out+=" content=$n"
    fi
    echo "$out"
}

# Status of a load: its exit status, the market row count, and whether its end state is
# coinflow-etl's (when that is the tool's aim).
judge() { # status end_state same_end_state_expected(0/1)
    local status=$1 state=$2 want=$3 n
    n=$(sed -E 's/^market=([^ ]*).*/\1/' <<<"$state")
    [[ $n == "$rows" ]] || status="$status; $n market rows, expected $rows"
    if ((want)); then
        if [[ -z $cf_state ]]; then
            status="$status; coinflow end state unknown"
        elif [[ ${state% content=*} != "${cf_state% content=*}" || ($state == *content=* && $state != "$cf_state") ]]; then
            status="$status; END STATE DIFFERS from coinflow-etl ($cf_state)"
        else
            status="$status; same end state as coinflow-etl"
        fi
    fi
    echo "$status"
}

# Runs a timed command; sets wall, rss, status. Usage: timed LOGFILE cmd...
timed() {
    local log=$1
    shift
    status=ok
    bench_timed "$tf" "$log" "$@" || status="exit $?"
    read -r wall rss <<<"$(bench_parse_time "$tf")"
}

cmp_url=$(bench_db_url cfbench_cmp)
CSV_OPTS="WITH (FORMAT csv, HEADER true)"

for size in "${sizes[@]}"; do
    read -r coins days <<<"$(bench_shape "$size")"
    rows=$(bench_rows "$size")
    gen=$BENCH_WORK_DIR/gen-$size
    data=$BENCH_WORK_DIR/data-$size
    tf=$(mktemp)

    # 1. Generate (deterministic: same seed, same bytes). Not repeated.
    rm -rf "$gen" "$data"
    gen_cmd=("$BIN/coinflow-etl" generate --coins "$coins" --days "$days" --people 10 --seed 42 --out "$gen")
    timed "$BENCH_RESULTS/generate-$size.log" "${gen_cmd[@]}"
    [[ $status == ok ]] || cf_die "generate failed (see $BENCH_RESULTS/generate-$size.log)"
    record "$size" "$rows" "coinflow-etl generate (all six files; not a compared row)" 1 "$wall" "$rss" "$(load1)" ok - "--coins $coins --days $days"
    # Every tool loads coins.csv, markets.csv and rankings.csv.
    mkdir -p "$data"
    mv "$gen/coins.csv" "$gen/markets.csv" "$gen/rankings.csv" "$data/"
    csv_lines=$(($(wc -l <"$data/markets.csv") - 1))
    [[ $csv_lines == "$rows" ]] || cf_log "warning: markets.csv has $csv_lines rows, expected $rows"
    rows=$csv_lines
    rank_lines=$(($(wc -l <"$data/rankings.csv") - 1))
    printf '%s\tcsv_mb\t%s\n%s\trankings_mb\t%s\n%s\trankings_rows\t%s\n' \
        "$size" "$(du -m "$data/markets.csv" | cut -f1)" "$size" "$(du -m "$data/rankings.csv" | cut -f1)" \
        "$size" "$rank_lines" >>"$BENCH_RESULTS/etl-sizes.tsv"

    compare=1
    for only in ${BENCH_ETL_ONLY:-}; do
        [[ $only == "$size" ]] && compare=0
    done

    # The scripts of the baselines (also kept with the results as evidence).
    copy3() { # psql \copy of the three files into coins, rankings and market (or market_csv)
        local market_table=${1:-market}
        echo "\\copy coins (id, symbol, name, cmc_id) FROM '$data/coins.csv' $CSV_OPTS"
        echo "\\copy rankings (coin_id, ts, rank, volume_24h_usd) FROM '$data/rankings.csv' $CSV_OPTS"
        echo "\\copy $market_table (coin_id, ts, price_usd, market_cap_usd, volume_24h_usd) FROM '$data/markets.csv' $CSV_OPTS"
    }
    copy_sql=$BENCH_WORK_DIR/copy-$size.sql
    copy3 >"$copy_sql"
    pk_sql=$BENCH_WORK_DIR/copy-pk-$size.sql
    {
        echo "SET maintenance_work_mem = '1GB';"
        echo "CREATE TABLE coins (id text, symbol text, name text, cmc_id bigint);"
        echo "CREATE TABLE rankings (coin_id text NOT NULL, ts timestamptz NOT NULL, rank int NOT NULL, volume_24h_usd float8, source text NOT NULL DEFAULT 'rankings');"
        echo "CREATE TABLE market (coin_id text NOT NULL, ts timestamptz NOT NULL, price_usd float8 NOT NULL, market_cap_usd float8, volume_24h_usd float8, rank int, rank_source text);"
        copy3
        echo "ALTER TABLE coins ADD PRIMARY KEY (id);"
        echo "ALTER TABLE rankings ADD PRIMARY KEY (coin_id, ts);"
        echo "ALTER TABLE market ADD PRIMARY KEY (coin_id, ts);"
    } >"$pk_sql"
    full_sql=$BENCH_WORK_DIR/endstate-$size.sql
    {
        echo "SET work_mem = '256MB';"
        echo "SET maintenance_work_mem = '1GB';"
        for m in "${MIGRATIONS[@]}"; do echo "\\i $m"; done
        echo "\\i $BENCH_DIR/sql/endstate-prepare.sql"
        echo "SELECT bench_drop(t) FROM unnest(ARRAY['market', 'rankings', 'daily', 'top_slots']) AS t;"
        copy3 market_csv
        echo "\\i $BENCH_DIR/sql/endstate-finish.sql"
    } >"$full_sql"
    if ((compare)); then
        cp "$full_sql" "$BENCH_RESULTS/psql-endstate-$size.sql"
        cp "$pk_sql" "$BENCH_RESULTS/psql-pk-$size.sql"
    fi

    cf_state=""
    for rep in $(seq 1 "$REPS"); do
        # 2. coinflow-etl end to end into a fresh database, then again on unchanged files.
        db=cfbench_etl_$size
        bench_fresh_db "$db"
        # Statements slower than 250 ms go to the server log (evidence for the reading).
        bench_psql "$DATABASE_URL" -c "ALTER DATABASE \"$db\" SET log_min_duration_statement = 250" 2>/dev/null || true
        log=$(server_log || true)
        offset=0
        [[ -n $log ]] && offset=$(stat -c %s "$log")
        bench_checkpoint
        etl_url=$(bench_db_url "$db")
        cmd=("$BIN/coinflow-etl" run --data-dir "$data" --summary "$BENCH_RESULTS/etl-summary-$size-$rep.json")
        ((rep == 1)) && echo "[$size] coinflow-etl: DATABASE_URL=$etl_url ${cmd[*]}" >>"$CMDS"
        l0=$(load1)
        DATABASE_URL=$etl_url timed "$BENCH_RESULTS/etl-run-$size-$rep.log" "${cmd[@]}"
        # The content hash in the first repetition (the loads are deterministic).
        record_state=$(end_state "$etl_url" "$([[ $rep == 1 ]] && echo content)")
        ((rep == 1)) && cf_state=$record_state
        st=$(judge "$status" "$record_state" 0)
        [[ ${record_state% content=*} == "${cf_state% content=*}" ]] || st="$st; END STATE DIFFERS from repetition 1 ($cf_state)"
        phases=$(grep -oE '(markets\.csv: markets loaded.* in [0-9.]+s|rankings\.csv: .*loaded.* in [0-9.]+s|(market ranks|top slots|daily): [0-9]+ row\(s\) changed in [0-9.]+s)' \
            "$BENCH_RESULTS/etl-run-$size-$rep.log" |
            sed -E 's/^(markets|rankings)\.csv: .* in ([0-9.]+s)/\1.csv \2/; s/: [0-9]+ row\(s\) changed in / /' | paste -sd ';' - || true)
        record "$size" "$rows" "coinflow-etl run (end to end)" "$rep" "$wall" "$rss" "$l0→$(load1)" "$st" "$record_state" "$phases"
        if [[ -n $log ]]; then
            {
                echo "== $size, repetition $rep: statements over 250 ms during coinflow-etl run (server log) =="
                tail -c +$((offset + 1)) "$log" | grep -E 'duration: [0-9.]+ ms' | sed -E 's/^.*(duration: )/\1/' | cut -c1-400
            } >>"$SLOW"
        fi
        bench_psql "$DATABASE_URL" -c "ALTER DATABASE \"$db\" RESET log_min_duration_statement" 2>/dev/null || true

        cmd=("$BIN/coinflow-etl" run --data-dir "$data")
        ((rep == 1)) && echo "[$size] coinflow-etl re-run: DATABASE_URL=$etl_url ${cmd[*]}" >>"$CMDS"
        l0=$(load1)
        DATABASE_URL=$etl_url timed "$BENCH_RESULTS/etl-rerun-$size-$rep.log" "${cmd[@]}"
        record "$size" "$rows" "coinflow-etl run (unchanged re-run)" "$rep" "$wall" "$rss" "$l0→$(load1)" "$status" - ""
        if ((rep == 1)); then
            printf '%s\tdb_mb\t%s\n' "$size" "$(bench_psql "$etl_url" -Atc "SELECT pg_database_size(current_database()) / 1048576")" >>"$BENCH_RESULTS/etl-sizes.tsv"
        fi
        if ! [[ ${BENCH_KEEP_DB:-} == "$size" && $rep == "$REPS" ]]; then
            bench_psql "$DATABASE_URL" -c "DROP DATABASE \"$db\""
        fi
        ((compare)) || continue

        # 3. The baselines, each into a fresh database cfbench_cmp.
        baseline() { # label setup(function) expect_end_state(0/1) note cmd...
            local label=$1 setup=$2 want=$3 note=$4 l0 state
            shift 4
            bench_fresh_db cfbench_cmp
            $setup
            bench_checkpoint
            ((rep == 1)) && echo "[$size] $label: $(printf '%q ' "$@")" >>"$CMDS"
            l0=$(load1)
            timed "$BENCH_RESULTS/baseline-$size.log" "$@"
            [[ $status == ok ]] || cp "$BENCH_RESULTS/baseline-$size.log" "$BENCH_RESULTS/failed-$size-rep$rep-${label//[^a-zA-Z0-9]/_}.log"
            if ((want && rep == 1)); then state=$(end_state "$cmp_url" content); else state=$(end_state "$cmp_url"); fi
            record "$size" "$rows" "$label" "$rep" "$wall" "$rss" "$l0→$(load1)" "$(judge "$status" "$state" "$want")" "$state" "$note"
            bench_psql "$DATABASE_URL" -c "DROP DATABASE cfbench_cmp"
        }
        setup_unindexed() {
            bench_psql "$cmp_url" -c "CREATE TABLE coins (id text, symbol text, name text, cmc_id bigint)" \
                -c "CREATE TABLE rankings (coin_id text, ts timestamptz, rank int, volume_24h_usd float8, source text DEFAULT 'rankings')" \
                -c "CREATE TABLE market (coin_id text, ts timestamptz, price_usd float8, market_cap_usd float8, volume_24h_usd float8, rank int, rank_source text)"
        }
        setup_keyed() {
            bench_psql "$cmp_url" -c "CREATE TABLE coins (id text PRIMARY KEY, symbol text, name text, cmc_id bigint)" \
                -c "CREATE TABLE rankings (coin_id text, ts timestamptz, rank int, volume_24h_usd float8, source text DEFAULT 'rankings', PRIMARY KEY (coin_id, ts))" \
                -c "CREATE TABLE market (coin_id text, ts timestamptz, price_usd float8, market_cap_usd float8, volume_24h_usd float8, rank int, rank_source text, PRIMARY KEY (coin_id, ts))"
        }
        setup_schema() {
            for m in "${MIGRATIONS[@]}"; do bench_psql "$cmp_url" -f "$m"; done
            bench_psql "$cmp_url" -c "ALTER TABLE rankings ALTER COLUMN source SET DEFAULT 'rankings'"
        }
        setup_none() { :; }
        psql_f=(psql -X -q -v ON_ERROR_STOP=1 "$cmp_url")
        baseline 'psql \copy ×3, unindexed tables (raw COPY; no keys, no rank join)' setup_unindexed 0 \
            "3 autocommit \\copy; server default maintenance_work_mem" "${psql_f[@]}" -f "$copy_sql"
        baseline 'psql \copy ×3, tables with primary keys (maintained per row; no rank join)' setup_keyed 0 \
            "3 autocommit \\copy" "${psql_f[@]}" -f "$copy_sql"
        baseline "psql \\copy ×3, coinflow's migrated schema (keys, indexes, foreign keys per row; no rank join)" setup_schema 0 \
            "3 autocommit \\copy into the schema the migrations create" "${psql_f[@]}" -f "$copy_sql"
        baseline 'psql, 1 transaction: \copy ×3 unindexed + ADD PRIMARY KEY (no rank join)' setup_none 0 \
            "BEGIN; CREATE TABLE ×3; \\copy ×3; ALTER TABLE … ADD PRIMARY KEY ×3; COMMIT; maintenance_work_mem 1GB" \
            "${psql_f[@]}" -1 -f "$pk_sql"
        baseline "psql, 1 transaction: coinflow's end state (rank join, daily, top_slots, keys, indexes, FKs)" setup_none 1 \
            "BEGIN; migrations; \\copy ×3 unindexed; as-of rank join (LATERAL, 60 s); daily; top_slots_of(); keys, indexes, FKs; ANALYZE; COMMIT; work_mem 256MB, maintenance_work_mem 1GB" \
            "${psql_f[@]}" -1 -f "$full_sql"

        # pgloader: coinflow's schema, then one command file with three LOAD CSV commands
        # (coins; rankings into rankings, whose key pgloader drops and rebuilds itself
        # with `drop indexes`; markets into the unindexed market_csv), the rank join and
        # everything after it in AFTER LOAD EXECUTE (bench/sql/endstate-finish.sql).
        IFS=';' read -r -a pgl_settings <<<"$PGLOADER_SETTINGS"
        for setting in "${pgl_settings[@]}"; do
            setting=$(sed -E 's/^ +| +$//g' <<<"$setting")
            load=$BENCH_WORK_DIR/pgloader-$size.load
            prep=$BENCH_WORK_DIR/pgloader-prepare-$size.sql
            {
                echo "SET work_mem = '256MB';"
                echo "SET maintenance_work_mem = '1GB';"
                for m in "${MIGRATIONS[@]}"; do echo "\\i $m"; done
                echo "\\i $BENCH_DIR/sql/endstate-prepare.sql"
                echo "SELECT bench_drop(t) FROM unnest(ARRAY['market', 'daily', 'top_slots']) AS t;"
                echo "SELECT bench_drop('rankings', 'f');"
            } >"$prep"
            cat >"$load" <<EOF
LOAD CSV
     FROM '$data/coins.csv' (id, symbol, name, cmc_id)
     INTO $cmp_url
     TARGET TABLE coins
     TARGET COLUMNS (id, symbol, name, cmc_id)
     WITH skip header = 1, fields terminated by ',', $setting;

LOAD CSV
     FROM '$data/rankings.csv' (coin_id, ts, rank, volume_24h_usd)
     INTO $cmp_url
     TARGET TABLE rankings
     TARGET COLUMNS (coin_id, ts, rank, volume_24h_usd)
     WITH skip header = 1, fields terminated by ',', drop indexes, $setting
     SET maintenance_work_mem to '1GB', work_mem to '256MB';

LOAD CSV
     FROM '$data/markets.csv' (coin_id, ts, price_usd, market_cap_usd, volume_24h_usd)
     INTO $cmp_url
     TARGET TABLE market_csv
     TARGET COLUMNS (coin_id, ts, price_usd, market_cap_usd, volume_24h_usd)
     WITH skip header = 1, fields terminated by ',', drop indexes, $setting
     SET maintenance_work_mem to '1GB', work_mem to '256MB'
     AFTER LOAD EXECUTE '$BENCH_DIR/sql/endstate-finish.sql';
EOF
            ((rep == 1)) && cp "$load" "$BENCH_RESULTS/pgloader-$size.load"
            # shellcheck disable=SC2016 # expanded by the inner shell
            baseline "pgloader ($setting), coinflow's end state via AFTER LOAD EXECUTE" setup_none 1 \
                "migrations + bench/sql/endstate-prepare.sql by psql, then 3 LOAD CSV; drop indexes on rankings and market_csv; rank join etc. in AFTER LOAD (not one transaction)" \
                bash -c 'psql -X -q -v ON_ERROR_STOP=1 "$1" -f "$2" && pgloader "$3"' _ "$cmp_url" "$prep" "$load"
            cp "$BENCH_RESULTS/baseline-$size.log" "$BENCH_RESULTS/pgloader-$size-rep$rep.log"
        done
    done

    if [[ ${BENCH_KEEP_DB:-} == "$size" ]]; then
        # The API benchmark wants exchanges for POST /runtasks: add the tickers file.
        mv "$gen/tickers.csv" "$data/"
        DATABASE_URL=$(bench_db_url "cfbench_etl_$size") "$BIN/coinflow-etl" run --data-dir "$data" >"$BENCH_RESULTS/etl-tickers-$size.log" 2>&1 ||
            cf_log "warning: loading tickers.csv failed (see $BENCH_RESULTS/etl-tickers-$size.log)"
        rm -rf "$gen"
    else
        rm -rf "$gen" "$data"
    fi
    rm -f "$tf" "$BENCH_RESULTS/baseline-$size.log"
done
