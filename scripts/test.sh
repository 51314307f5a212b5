#!/usr/bin/env bash
# The one test command: provisions PostgreSQL, runs `cargo test --workspace`, builds the
# binaries and runs the black-box pytest suite (tests/) against them.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -- -k rerun     # arguments after -- go to pytest
#   scripts/test.sh --pytest-only   # skip `cargo test` (quick iteration on tests/)
#
# DATABASE_URL set: that server is used (each test creates and drops its own database).
# Unset: a throwaway cluster is started from the local PostgreSQL binaries and removed on
# exit, also on failure or Ctrl-C. CARGO_TARGET_DIR is honoured. A missing dependency
# (cargo, PostgreSQL binaries, pytest, requests, psycopg, the diesel CLI) is an error,
# never a skip.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/pg.sh
source "$ROOT/scripts/lib/pg.sh"

run_cargo_test=1
pytest_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --pytest-only) run_cargo_test=0 ;;
        --) shift; pytest_args=("$@"); break ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        *) cf_die "unknown argument $1 (pytest arguments go after --)" ;;
    esac
    shift
done

PYTHON=${PYTHON:-python3}

# Check every dependency before spending minutes on a build.
command -v cargo >/dev/null || cf_die "cargo not found (install Rust with rustup)"
command -v "$PYTHON" >/dev/null || cf_die "$PYTHON not found"
command -v diesel >/dev/null ||
    cf_die "the diesel CLI is needed: cargo install diesel_cli --version '~2.3' --no-default-features --features postgres --locked"
if ! "$PYTHON" -c 'import pytest, requests, psycopg' 2>/dev/null; then
    cf_die "the pytest suite needs its Python packages: $PYTHON -m pip install -r tests/requirements.txt"
fi
# Tests that stop the database or race two ETLs start their own cluster from these.
if [[ ${COINFLOW_SKIP_OWN_CLUSTER:-0} != 1 ]]; then
    PG_BINDIR=$(pg_bindir)
    export PG_BINDIR
fi

pg_ensure_database_url

# shared/src/schema.rs must be what `diesel print-schema` makes of migrations/.
cf_log "scripts/check-schema.sh"
"$ROOT/scripts/check-schema.sh"

target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
export COINFLOW_ETL_BIN=$target_dir/debug/coinflow-etl
export COINFLOW_API_BIN=$target_dir/debug/coinflow-api

# Both suites run even when the first fails (a CI run is slow: report everything), and
# the script fails if either did.
cargo_status=0
if [[ $run_cargo_test == 1 ]]; then
    cf_log "cargo test --workspace --no-fail-fast"
    cargo test --workspace --no-fail-fast || cargo_status=$?
fi

cf_log "cargo build --workspace --bins"
cargo build --workspace --bins
[[ -x $COINFLOW_ETL_BIN ]] || cf_die "$COINFLOW_ETL_BIN was not built"
[[ -x $COINFLOW_API_BIN ]] || cf_die "$COINFLOW_API_BIN was not built"

cf_log "pytest tests/ (ETL: $COINFLOW_ETL_BIN, API: $COINFLOW_API_BIN)"
pytest_status=0
"$PYTHON" -m pytest tests/ ${pytest_args[@]+"${pytest_args[@]}"} || pytest_status=$?

if [[ $cargo_status -ne 0 || $pytest_status -ne 0 ]]; then
    cf_log "FAILED: cargo test exit $cargo_status, pytest exit $pytest_status"
    exit 1
fi
cf_log "all tests passed"
