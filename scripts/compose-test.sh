#!/usr/bin/env bash
# The compose stack end to end, as a user runs it: build the images, `up -d`, wait for the
# api's healthcheck, check /read/first-chunk and /top, run the black-box suite in the
# `tests` container, check that the one-shot etl exited 0 and that nothing restarted,
# then `down -v`.
#
#   scripts/compose-test.sh          # images from host-built release binaries (CI)
#   scripts/compose-test.sh --full   # the multi-stage build that compiles in the image
#
# Without --full the release binaries are built on the host (`cargo build --release
# --bins`, CARGO_TARGET_DIR honoured), copied into docker/prebuilt/ and the images are
# built from the `*-prebuilt` targets (docker/compose.prebuilt.yml). --full builds exactly
# what `docker compose up --build` builds: run it before a change to docker/ lands.
#
# Needs a Docker engine and docker-compose (v1, or the v2 plugin as `docker compose`).
# Uses its own compose project name and a free host port, and a .env made from
# .env.example when the checkout has none (removed again on exit). Each step is timed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/pg.sh
source "$ROOT/scripts/lib/pg.sh"

full=0
case ${1:-} in
    "") ;;
    --full) full=1 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) cf_die "unknown argument $1 (try --help)" ;;
esac

if command -v docker-compose >/dev/null 2>&1; then
    compose_cmd=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
else
    cf_die "neither docker-compose nor the docker compose plugin is installed"
fi
docker info >/dev/null 2>&1 || cf_die "no Docker engine answers (start dockerd)"

project=coinflow-compose-test-$$
files=(-f docker-compose.yml)
[[ $full == 1 ]] || files+=(-f docker/compose.prebuilt.yml)
compose() { "${compose_cmd[@]}" -p "$project" "${files[@]}" "$@"; }

timings=()
timed() {
    local label=$1 start
    shift
    start=$(date +%s)
    cf_log "$label"
    "$@"
    timings+=("$label: $(($(date +%s) - start)) s")
}

if [[ ! -f .env ]]; then
    cp .env.example .env
    cf_at_exit "rm -f '$ROOT/.env'"
fi
# A free port on the host, so a stack already on 8000 is left alone.
API_HOST_PORT=$(pg_free_port)
export API_HOST_PORT
base=http://127.0.0.1:$API_HOST_PORT

cf_at_exit "${compose_cmd[*]} -p $project ${files[*]} --profile test down -v --remove-orphans >/dev/null 2>&1 || true"

if [[ $full == 0 ]]; then
    target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
    timed "cargo build --release --bins" cargo build --release --locked --bins
    for bin in coinflow-etl coinflow-api; do
        install -m 0755 "$target_dir/release/$bin" "docker/prebuilt/$bin"
    done
    cf_at_exit "rm -f '$ROOT/docker/prebuilt/coinflow-etl' '$ROOT/docker/prebuilt/coinflow-api'"
fi

timed "build images" compose --profile test build
timed "up -d (db healthy, etl loads data/, api starts)" compose up -d

container() { compose ps -q "$1"; }

wait_healthy() {
    local id status deadline=$((SECONDS + 240))
    id=$(container api)
    [[ -n $id ]] || cf_die "no api container"
    while :; do
        status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id")
        [[ $status == healthy ]] && return 0
        if [[ $status == unhealthy || $SECONDS -ge $deadline ]]; then
            compose logs --tail 50 >&2 || true
            cf_die "api is $status after $((SECONDS - deadline + 240)) s"
        fi
        sleep 2
    done
}
timed "api healthcheck" wait_healthy

check_get() {
    local path=$1 want=$2 body
    body=$(curl -fsS "$base$path") || cf_die "GET $path failed"
    grep -Eq -- "$want" <<<"$body" || cf_die "GET $path: expected $want in: ${body:0:300}"
    cf_log "GET $path ok"
}
check_get "/read/first-chunk" '"dataset": ?"market"'
check_get "/read/first-chunk" '"coin_id": ?"'
check_get "/top?limit=5" '"rank": ?1[,}]'
check_get "/top?limit=5&format=csv" 'Rank,Symbol,Price USD'

etl_id=$(docker ps -aq --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=etl" | head -1)
[[ -n $etl_id ]] || cf_die "no etl container"
etl_exit=$(docker inspect -f '{{.State.ExitCode}}' "$etl_id")
[[ $etl_exit == 0 ]] || { docker logs "$etl_id" >&2; cf_die "etl exited $etl_exit"; }
cf_log "etl exited 0"

timed "black-box suite in the tests container" compose --profile test run --rm tests

for service in db api; do
    id=$(container "$service")
    restarts=$(docker inspect -f '{{.RestartCount}}' "$id")
    running=$(docker inspect -f '{{.State.Running}}' "$id")
    [[ $restarts == 0 && $running == true ]] ||
        cf_die "$service restarted $restarts times (running: $running)"
done
cf_log "no container restarted"

# What each image adds above its base (the README states these).
base_size=$(docker image inspect -f '{{.Size}}' debian:bookworm-slim)
for image in coinflow-etl:local coinflow-api:local; do
    size=$(docker image inspect -f '{{.Size}}' "$image")
    cf_log "$image: $((size / 1000000)) MB, $(((size - base_size) / 1000000)) MB above debian:bookworm-slim"
done
for line in "${timings[@]}"; do cf_log "time: $line"; done
cf_log "compose stack passed"
