#!/usr/bin/env bash
# Runs coinflow without Docker: builds the release binaries, loads data/ with the ETL and
# serves the API in the foreground (port API_PORT, default 8000).
#
#   scripts/run-local.sh
#   scripts/run-local.sh --debug        # debug build: much faster to compile
#   DATABASE_URL=postgres://me@localhost/coinflow scripts/run-local.sh
#
# DATABASE_URL set: that server is used. Unset: a throwaway PostgreSQL cluster is started
# from the local binaries; Ctrl-C stops the API and removes the cluster with its data.
# .env is read when present (variables already set win). DATA_DIR overrides data/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/pg.sh
source "$ROOT/scripts/lib/pg.sh"

profile=release
case ${1:-} in
    "") ;;
    --debug) profile=debug ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    *) cf_die "unknown argument $1 (try --help)" ;;
esac

# .env holds settings the binaries would read anyway; reading it here lets DATABASE_URL
# from .env decide whether a throwaway cluster is needed. The environment wins.
if [[ -f .env ]]; then
    while IFS='=' read -r key value; do
        [[ $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
        [[ -n ${!key+x} ]] && continue
        value=${value%$'\r'}
        value=${value#\"}
        value=${value%\"}
        export "$key=$value"
    done <.env
fi
# Inside Docker the compose file supplies DATABASE_URL for the `db` host; outside it a
# URL naming that host cannot work, so treat it as unset.
if [[ ${DATABASE_URL:-} == *@db:* || ${DATABASE_URL:-} == *@db/* ]]; then
    cf_log "ignoring DATABASE_URL from .env: it names the compose host 'db'"
    unset DATABASE_URL
fi

command -v cargo >/dev/null || cf_die "cargo not found (install Rust with rustup)"
if [[ $profile == release ]]; then
    cf_log "cargo build --release --bins"
    cargo build --release --bins
else
    cf_log "cargo build --bins"
    cargo build --bins
fi
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
etl_bin=$target_dir/$profile/coinflow-etl
api_bin=$target_dir/$profile/coinflow-api

pg_ensure_database_url

data_dir=${DATA_DIR:-data}
cf_log "coinflow-etl run --data-dir $data_dir --partial-ok"
"$etl_bin" run --data-dir "$data_dir" --partial-ok

export API_PORT=${API_PORT:-8000}
cf_log "coinflow-api on http://127.0.0.1:$API_PORT (Ctrl-C stops it)"
# Not exec: the exit trap must outlive the API to remove the throwaway cluster.
status=0
"$api_bin" || status=$?
exit "$status"
