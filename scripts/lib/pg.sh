# shellcheck shell=bash
# Throwaway PostgreSQL clusters for scripts/test.sh, scripts/run-local.sh and bench/.
#
# Source this file, then:
#
#     pg_ensure_database_url      # keep $DATABASE_URL, or start a throwaway cluster
#     pg_throwaway_cluster        # always start one (sets PG_CLUSTER_* and DATABASE_URL)
#     cf_at_exit 'some command'   # run a command on exit, Ctrl-C or TERM (LIFO)
#
# A throwaway cluster lives in a mktemp directory: initdb with trust auth, listening on
# 127.0.0.1 only, on a free port chosen at run time, its unix socket inside the same
# directory. It is stopped and the directory removed when the shell exits, on success,
# failure, Ctrl-C or TERM. initdb refuses to run as root, so as root the cluster runs as
# the `postgres` system user (created as `coinflow-pg` when there is none).
#
# Settings (environment):
#   PG_BINDIR      directory holding initdb and pg_ctl (default: PATH, then the newest
#                  /usr/lib/postgresql/*/bin)
#   PG_FAST        1 (default) turns off fsync and friends: fine for tests, wrong for
#                  benchmarks that compare durability costs (bench/ sets PG_FAST=0)
#   PG_EXTRA_OPTS  more server options, e.g. "-c shared_buffers=512MB"
#   PG_KEEP        1 keeps the cluster directory on exit (for post-mortems)

# ---------------------------------------------------------------------------------------
# Exit hooks: every script that sources this file gets one trap that runs all hooks.

CF_EXIT_HOOKS=()

cf_at_exit() {
    CF_EXIT_HOOKS+=("$1")
    if [[ ${#CF_EXIT_HOOKS[@]} -eq 1 ]]; then
        trap cf__run_exit_hooks EXIT
        trap 'cf__on_signal 130' INT
        trap 'cf__on_signal 143' TERM
    fi
}

cf__run_exit_hooks() {
    local status=$?
    local i
    # Run each hook once, newest first; a failing hook must not stop the others.
    for ((i = ${#CF_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do
        eval "${CF_EXIT_HOOKS[i]}" || true
    done
    CF_EXIT_HOOKS=()
    return "$status"
}

cf__on_signal() {
    trap - INT TERM
    echo "interrupted: cleaning up" >&2
    exit "$1" # runs the EXIT trap
}

cf_log() {
    echo "[$(date -u +%H:%M:%S)] $*" >&2
}

cf_die() {
    echo "error: $*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------
# PostgreSQL binaries and an unprivileged user to run them.

# Prints the directory that holds initdb and pg_ctl, or fails naming what is missing.
pg_bindir() {
    if [[ -n ${PG_BINDIR:-} ]]; then
        [[ -x $PG_BINDIR/initdb && -x $PG_BINDIR/pg_ctl ]] ||
            cf_die "PG_BINDIR=$PG_BINDIR holds no initdb/pg_ctl"
        echo "$PG_BINDIR"
        return
    fi
    local initdb
    if initdb=$(command -v initdb) && [[ -x $(dirname "$initdb")/pg_ctl ]]; then
        dirname "$initdb"
        return
    fi
    local dir
    dir=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]]; then
        echo "$dir"
        return
    fi
    cf_die "PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL (apt-get install postgresql), set PG_BINDIR, or set DATABASE_URL to a running server"
}

# The OS user the cluster runs as: the current one, or an unprivileged one when root.
pg_os_user() {
    if [[ $EUID -ne 0 ]]; then
        id -un
        return
    fi
    if id postgres >/dev/null 2>&1; then
        echo postgres
        return
    fi
    if ! id coinflow-pg >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin coinflow-pg ||
            cf_die "cannot create the unprivileged user coinflow-pg for initdb"
    fi
    echo coinflow-pg
}

# Runs a command as the cluster's user.
pg__as() {
    local user=$1
    shift
    if [[ $user == "$(id -un)" ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$user" -- "$@"
    else
        su -s /bin/sh "$user" -c "$(printf '%q ' "$@")"
    fi
}

# Prints a TCP port that is free on 127.0.0.1 right now.
pg_free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
        return
    fi
    local port i
    for ((i = 0; i < 50; i++)); do
        port=$((20000 + RANDOM % 40000))
        # A refused connection means nobody listens there.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    cf_die "no free TCP port found"
}

# ---------------------------------------------------------------------------------------
# Clusters.

# Starts a throwaway cluster and exports DATABASE_URL for it. Sets PG_CLUSTER_DIR,
# PG_CLUSTER_PORT, PG_CLUSTER_USER and PG_CLUSTER_BINDIR. Removed on exit.
pg_throwaway_cluster() {
    local bindir user dir port attempt opts
    bindir=$(pg_bindir)
    user=$(pg_os_user)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/coinflow-pg.XXXXXX")
    PG_CLUSTER_DIR=$dir
    PG_CLUSTER_BINDIR=$bindir
    PG_CLUSTER_USER=$user
    cf_at_exit pg_cluster_remove
    chmod 0755 "$dir"
    mkdir -p "$dir/data" "$dir/sock"
    chown -R "$user" "$dir" || cf_die "cannot hand $dir to $user"

    cf_log "initdb ($bindir/initdb) in $dir as $user"
    pg__as "$user" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust \
        --encoding=UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; cf_die "initdb failed"; }

    opts="-c listen_addresses=127.0.0.1 -k $dir/sock -c max_connections=200"
    if [[ ${PG_FAST:-1} == 1 ]]; then
        opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    fi
    opts+=" ${PG_EXTRA_OPTS:-}"

    # The port is free when chosen but may be taken before the server binds it: retry.
    for attempt in 1 2 3 4 5; do
        port=$(pg_free_port)
        if pg__as "$user" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "$opts -p $port" start >/dev/null; then
            PG_CLUSTER_PORT=$port
            export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
            export PG_CLUSTER_DIR PG_CLUSTER_PORT PG_CLUSTER_USER PG_CLUSTER_BINDIR
            cf_log "throwaway PostgreSQL cluster on 127.0.0.1:$port (data in $dir)"
            return 0
        fi
        cf_log "PostgreSQL did not start on port $port (attempt $attempt); retrying"
    done
    tail -n 30 "$dir/server.log" >&2 || true
    cf_die "could not start a throwaway PostgreSQL cluster (log above)"
}

# Stops the throwaway cluster (if running) and removes its directory. Idempotent.
pg_cluster_remove() {
    local dir=${PG_CLUSTER_DIR:-}
    [[ -n $dir && -d $dir ]] || return 0
    if [[ -f $dir/data/postmaster.pid ]]; then
        pg__as "$PG_CLUSTER_USER" "$PG_CLUSTER_BINDIR/pg_ctl" -D "$dir/data" -m immediate -w -t 30 \
            stop >/dev/null 2>&1 || true
    fi
    if [[ ${PG_KEEP:-0} == 1 ]]; then
        cf_log "PG_KEEP=1: keeping the cluster directory $dir"
    else
        rm -rf "$dir"
        cf_log "throwaway PostgreSQL cluster removed"
    fi
    PG_CLUSTER_DIR=
}

# Prints the URL of database $2 on the server of URL $1 (query parameters dropped).
pg_url_with_database() {
    local base=${1%%\?*}
    echo "${base%/*}/$2"
}

# Prints a connection URL with any password hidden.
pg_redact_url() {
    sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"
}

# Keeps a DATABASE_URL that is already set; otherwise starts a throwaway cluster.
pg_ensure_database_url() {
    if [[ -n ${DATABASE_URL:-} ]]; then
        cf_log "using the PostgreSQL server of DATABASE_URL ($(pg_redact_url "$DATABASE_URL"))"
        export DATABASE_URL
    else
        pg_throwaway_cluster
    fi
}
