#!/usr/bin/env bash
# Budgets 1-4 of BENCHMARKS.md on three set-ups in one sitting: sled (a
# fresh data directory), one replica over PostgreSQL, and two replicas over
# one PostgreSQL database with the load generator spread over both (two
# `photoclaim bench` processes at once, half the connections each; their
# requests/s are added, and so are their health baselines).
#
#   cargo build --release
#   eval "$(bash .ci/postgres.sh start /tmp/photoclaim-bench-pg)"
#   benches/backends.sh                    # PHOTOCLAIM_TEST_DATABASE_URL names the server
#
# Each set-up starts on an empty store (a new directory, a new database),
# is filled with 10,000 claims, then runs: status reads at 16 connections x
# 32 in flight (three runs), registrations at 1 x 1 and 4 x 16, attachments
# at 1 x 1 and 4 x 16. Prints one line per run: set-up, mix, concurrency,
# requests/s, ratio to health, p99 (ms; the larger of the two processes').
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${B:-$ROOT/target/release/photoclaim}
ADMIN=${PHOTOCLAIM_TEST_DATABASE_URL:?set PHOTOCLAIM_TEST_DATABASE_URL (bash .ci/postgres.sh start DIR)}
WORK=$(mktemp -d /tmp/photoclaim-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# serve LOG ARGS...: starts a server and sets ADDR once it listens.
serve() {
    local log=$1
    shift
    RUST_LOG=info "$B" serve --listen 127.0.0.1:0 "$@" >/dev/null 2>"$log" </dev/null &
    PIDS+=($!)
    for _ in $(seq 600); do
        ADDR=$(sed -n 's/.*photoclaim listening addr=\([^ ]*\).*/\1/p' "$log" | head -n 1)
        [[ -n $ADDR ]] && return
        sleep 0.1
    done
    echo "no server in $log" >&2
    exit 1
}

stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}

# run SETUP MIX CONNECTIONS IN_FLIGHT ADDR...: one run, the connections
# split over the addresses, the reports summed.
run() {
    local setup=$1 mix=$2 conns=$3 inflight=$4
    shift 4
    local per=$((conns / $#)) i=0 files=() benches=()
    for addr in "$@"; do
        i=$((i + 1))
        "$B" bench --server "http://$addr" --mix "$mix" --connections "$per" --in-flight "$inflight" \
            --json >"$WORK/run-$i.json" 2>/dev/null &
        benches+=($!)
        files+=("$WORK/run-$i.json")
    done
    for pid in "${benches[@]}"; do wait "$pid"; done
    python3 - "$setup" "$mix" "$conns x $inflight" "${files[@]}" <<'EOF'
import json, sys
setup, mix, shape, *files = sys.argv[1:]
reports = [json.load(open(f)) for f in files]
rate = sum(r["mix"]["rpcs"][mix]["per_second"] for r in reports)
base = sum(r["baseline"]["rpcs"]["health"]["per_second"] for r in reports)
p99 = max(r["mix"]["rpcs"][mix]["p99_ms"] for r in reports)
errors = sum(sum(r["mix"]["rpcs"][mix]["errors"].values()) for r in reports)
print(f"{setup:<14} {mix:<8} {shape:<8} {rate:>9.0f} req/s  {rate / base:5.2f} x health ({base:>7.0f})  p99 {p99:7.1f} ms  errors {errors}")
EOF
}

# suite SETUP ADDR...: the runs of one set-up.
suite() {
    local setup=$1
    shift
    "$B" bench --server "http://$1" --mix status --prepare 10000 --duration 1 --warmup 0 --no-baseline \
        >/dev/null 2>&1
    for _ in 1 2 3; do run "$setup" status 16 32 "$@"; done
    # One request in flight goes to one replica.
    run "$setup" register 1 1 "$1"
    run "$setup" register 4 16 "$@"
    run "$setup" attach 1 1 "$1"
    run "$setup" attach 4 16 "$@"
}

database() {
    local name=$1
    psql -qX "$ADMIN" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" -c "CREATE DATABASE $name" >/dev/null
    echo "${ADMIN%/*}/$name"
}

echo "build $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) cores, $(date -u +%FT%TZ)"
serve "$WORK/sled.log" --data-dir "$WORK/sled"
suite sled "$ADDR"
stop_all
url=$(database photoclaim_bench_one)
serve "$WORK/pg1.log" --database-url "$url"
suite "pg 1 replica" "$ADDR"
stop_all
url=$(database photoclaim_bench_two)
serve "$WORK/pg2a.log" --database-url "$url"
a=$ADDR
serve "$WORK/pg2b.log" --database-url "$url"
suite "pg 2 replicas" "$a" "$ADDR"
stop_all
