#!/usr/bin/env bash
# Checks that shared/src/schema.rs is what `diesel print-schema` makes of migrations/:
# applies every migration to a throwaway database, prints its schema and compares.
#
#   scripts/check-schema.sh           # fail when the committed schema.rs differs
#   scripts/check-schema.sh --write   # regenerate shared/src/schema.rs instead
#
# Needs the diesel CLI (PostgreSQL only):
#   cargo install diesel_cli --version '~2.3' --no-default-features --features postgres --locked
# DATABASE_URL set: a database is created and dropped on that server; unset: a throwaway
# cluster (scripts/lib/pg.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/pg.sh
source "$ROOT/scripts/lib/pg.sh"

write=0
case ${1:-} in
    --write) write=1 ;;
    "") ;;
    *) cf_die "unknown argument $1 (scripts/check-schema.sh [--write])" ;;
esac

command -v diesel >/dev/null ||
    cf_die "the diesel CLI is needed: cargo install diesel_cli --version '~2.3' --no-default-features --features postgres --locked"
command -v psql >/dev/null || cf_die "psql not found (PostgreSQL client)"

pg_ensure_database_url
db=coinflow_schema_check_$$
admin=$DATABASE_URL
url=$(pg_url_with_database "$admin" "$db")
psql -X -q -v ON_ERROR_STOP=1 "$admin" -c "CREATE DATABASE $db"
cf_at_exit "psql -X -q '$admin' -c 'DROP DATABASE IF EXISTS $db WITH (FORCE)' >/dev/null 2>&1"

# An empty configuration: `migration run` would otherwise rewrite schema.rs itself.
no_config=$(mktemp --suffix=.toml)
cf_at_exit "rm -f '$no_config'"
diesel migration run --database-url "$url" --migration-dir migrations --config-file "$no_config" >/dev/null
printed=$(mktemp)
cf_at_exit "rm -f '$printed'"
diesel print-schema --database-url "$url" --config-file diesel.toml >"$printed"

if [[ $write == 1 ]]; then
    cp "$printed" shared/src/schema.rs
    cf_log "shared/src/schema.rs regenerated from migrations/"
elif ! diff -u shared/src/schema.rs "$printed"; then
    cf_die "shared/src/schema.rs differs from what migrations/ give (above); run scripts/check-schema.sh --write"
else
    cf_log "shared/src/schema.rs matches migrations/"
fi
