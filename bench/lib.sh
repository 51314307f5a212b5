# shellcheck shell=bash
# Shared helpers for bench/etl.sh, bench/api.sh and bench/run.sh. Source it.
#
# Results go to $BENCH_RESULTS as tab-separated files that bench/report.py renders
# into BENCHMARKS.md; scratch data (CSV files, a throwaway cluster) under $BENCH_WORK.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)

# shellcheck source-path=SCRIPTDIR source=../scripts/lib/pg.sh
source "$REPO_DIR/scripts/lib/pg.sh"

# Benchmarks compare durable loads: keep fsync on in the throwaway cluster.
export PG_FAST=${PG_FAST:-0}
# One server configuration for every tool, set here so runs are comparable.
export PG_EXTRA_OPTS=${PG_EXTRA_OPTS:-"-c shared_buffers=1GB -c max_wal_size=2GB -c checkpoint_timeout=30min"}

BENCH_RESULTS=${BENCH_RESULTS:-$REPO_DIR/bench/results}
mkdir -p "$BENCH_RESULTS"

# Rows per size label: "<coins> <days>" (hourly snapshots, so rows = coins * days * 24).
bench_shape() {
    case $1 in
    100k) echo "100 42" ;;
    1m) echo "1000 42" ;;
    10m) echo "10000 42" ;;
    50m) echo "10000 209" ;;
    *) cf_die "unknown size $1 (use 100k, 1m, 10m or 50m)" ;;
    esac
}

bench_rows() {
    local coins days
    read -r coins days <<<"$(bench_shape "$1")"
    echo $((coins * days * 24))
}

# The coinflow binaries: $COINFLOW_BIN, else the release build of the shared target dir.
bench_bin_dir() {
    if [[ -n ${COINFLOW_BIN:-} ]]; then
        echo "$COINFLOW_BIN"
        return
    fi
    local target=${CARGO_TARGET_DIR:-$REPO_DIR/target}
    echo "$target/release"
}

bench_need_binaries() {
    local bin
    bin=$(bench_bin_dir)
    if [[ ${BENCH_BUILD:-0} == 1 || ! -x $bin/coinflow-etl || ! -x $bin/coinflow-api ]]; then
        cf_log "building release binaries (cargo build --release --bins)"
        (cd "$REPO_DIR" && cargo build --release --bins) || cf_die "release build failed"
    fi
    [[ -x $bin/coinflow-etl && -x $bin/coinflow-api ]] || cf_die "no coinflow-etl/coinflow-api in $bin"
}

# Installs the Debian packages the suite uses when they are missing.
bench_need_tools() {
    local missing=()
    command -v pgloader >/dev/null || missing+=(pgloader)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v pgbench >/dev/null || missing+=(postgresql-client)
    command -v psql >/dev/null || missing+=(postgresql-client)
    [[ -x /usr/bin/time ]] || missing+=(time)
    command -v python3 >/dev/null || missing+=(python3)
    if ((${#missing[@]})); then
        cf_log "installing ${missing[*]}"
        local sudo=()
        [[ $EUID -ne 0 ]] && sudo=(sudo)
        if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "${missing[@]}"; }; then
            cf_die "could not install ${missing[*]}"
        fi
    fi
}

# A scratch directory with room for the data: $BENCH_WORK, else $TMPDIR or /tmp, else
# /dev/shm when that is the only place with enough space (the report says so).
bench_pick_work() {
    local need_kb=$1
    if [[ -n ${BENCH_WORK:-} ]]; then
        mkdir -p "$BENCH_WORK"
        echo "$BENCH_WORK"
        return
    fi
    local dir avail
    for dir in "${TMPDIR:-/tmp}" /dev/shm; do
        [[ -d $dir && -w $dir ]] || continue
        avail=$(df -Pk "$dir" | awk 'NR==2 {print $4}')
        if ((avail > need_kb)); then
            mkdir -p "$dir/coinflow-bench"
            echo "$dir/coinflow-bench"
            return
        fi
    done
    cf_die "no directory with ${need_kb} KB free for the benchmark data (set BENCH_WORK)"
}

# A database URL for database $1 on the server of $DATABASE_URL.
bench_db_url() {
    local base=${DATABASE_URL%%\?*}
    echo "${base%/*}/$1"
}

bench_psql() {
    psql -X -v ON_ERROR_STOP=1 -q "$@"
}

# Drops and creates database $1.
bench_fresh_db() {
    bench_psql "$DATABASE_URL" -c "DROP DATABASE IF EXISTS \"$1\"" -c "CREATE DATABASE \"$1\""
}

# /usr/bin/time -v output -> "wall_seconds rss_kb".
bench_parse_time() {
    awk -F': ' '
        /Elapsed \(wall clock\)/ {
            n = split($2, p, ":"); s = 0
            for (i = 1; i <= n; i++) s = s * 60 + p[i]
            wall = s
        }
        /Maximum resident set size/ { rss = $2 }
        END { printf "%.2f %d\n", wall, rss }' "$1"
}

# Runs a command under /usr/bin/time -v. Usage: bench_timed TIMEFILE LOGFILE cmd...
# Returns the command's exit status.
bench_timed() {
    local tf=$1 log=$2
    shift 2
    /usr/bin/time -v -o "$tf" "$@" >"$log" 2>&1
}

# A CHECKPOINT so that one measurement does not pay for the previous one's dirty pages.
bench_checkpoint() {
    bench_psql "$DATABASE_URL" -c CHECKPOINT
}

bench_machine_info() {
    local out=$1
    {
        echo "cpu_model	$(lscpu | awk -F': *' '/^Model name/ {print $2; exit}')"
        echo "nproc	$(nproc)"
        echo "mem	$(free -h | awk '/^Mem:/ {print $2}')"
        echo "kernel	$(uname -r)"
        echo "os	$(. /etc/os-release && echo "$PRETTY_NAME")"
        echo "postgres	$(bench_psql "$DATABASE_URL" -Atc 'SHOW server_version')"
        # current_setting() prints each value with its unit as SHOW does (1GB, not 131072 8kB pages).
        echo "pg_settings	$(bench_psql "$DATABASE_URL" -Atc "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('shared_buffers', 'max_wal_size', 'fsync', 'synchronous_commit', 'full_page_writes', 'wal_level', 'work_mem', 'maintenance_work_mem', 'checkpoint_timeout', 'max_parallel_maintenance_workers', 'max_worker_processes')")"
        if [[ -n ${PG_CLUSTER_DIR:-} ]]; then
            echo "cluster	throwaway cluster started by the suite (scripts/lib/pg.sh), removed at exit"
        else
            echo "cluster	the server of DATABASE_URL, given to the suite (not started by it; other databases may live there)"
        fi
        echo "psql	$(psql --version)"
        echo "pgbench	$(pgbench --version)"
        echo "pgloader	$(pgloader --version 2>/dev/null | head -n 1)"
        echo "wrk	$(wrk -v 2>&1 | head -n 1)"
        echo "rustc	$(rustc --version 2>/dev/null || echo '?')"
        echo "commit	$(git -C "$REPO_DIR" rev-parse --short HEAD) ($(git -C "$REPO_DIR" log -1 --format=%ci))"
        echo "dirty	$(git -C "$REPO_DIR" status --porcelain -- etl api shared migrations | wc -l) modified files under etl/ api/ shared/ migrations/ at run time"
        local bin
        bin=$(bench_bin_dir)
        echo "etl_binary	$bin/coinflow-etl (built $(date -u -r "$bin/coinflow-etl" '+%Y-%m-%d %H:%M UTC'))"
        echo "api_binary	$bin/coinflow-api (built $(date -u -r "$bin/coinflow-api" '+%Y-%m-%d %H:%M UTC'))"
        echo "work_dir	$BENCH_WORK_DIR ($(df -PT "$BENCH_WORK_DIR" | awk 'NR==2 {print $2}'))"
        echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
    } >"$out"
}
