#!/usr/bin/env bash
# Start-up to SERVING: the wall time from launching `photoclaim serve` on a
# data directory (or a PostgreSQL database) to the first
# `grpc.health.v1.Health/Check` answered
# SERVING (polled with grpcurl every 10 ms, so the figure includes up to one
# grpcurl call, ~10-20 ms, on top of the server's own start-up). Runs it
# RUNS times (default 3) and stops the server with SIGTERM after each.
#
#   benches/startup_to_serving.sh DATA_DIR
#   benches/startup_to_serving.sh postgres://USER@HOST:PORT/DB
#
# Then it waits for the PDQ index (`PDQ index ready` in the log) and
# prints its build time and the resident memory then.
#
# Environment: PHOTOCLAIM_BIN (default target/release/photoclaim), GRPCURL
# (default: grpcurl on PATH, else target/ci-venv/bin/grpcurl), PORT (50199),
# RUNS (3).

set -euo pipefail

dir=${1:?usage: benches/startup_to_serving.sh DATA_DIR|DATABASE_URL}
case $dir in
postgres://* | postgresql://*) storage=(--database-url "$dir") ;;
*) storage=(--data-dir "$dir") ;;
esac
bin=${PHOTOCLAIM_BIN:-target/release/photoclaim}
grpcurl=${GRPCURL:-$(command -v grpcurl || echo target/ci-venv/bin/grpcurl)}
port=${PORT:-50199}
runs=${RUNS:-3}
[[ -x $bin ]] || { echo "no photoclaim binary at $bin (cargo build --release)" >&2; exit 1; }
[[ -x $grpcurl ]] || { echo "no grpcurl at $grpcurl (set GRPCURL)" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
for run in $(seq 1 "$runs"); do
    started=$(date +%s%N)
    "$bin" serve --listen "127.0.0.1:$port" "${storage[@]}" 2>"$log" &
    pid=$!
    until "$grpcurl" -plaintext -max-time 1 "127.0.0.1:$port" grpc.health.v1.Health/Check 2>/dev/null |
        grep -q '"SERVING"'; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "server exited before serving:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.01
    done
    serving=$(date +%s%N)
    rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    echo "run $run: SERVING after $(((serving - started) / 1000000)) ms, resident memory $((rss_kb / 1024)) MiB"
    until grep -q "PDQ index ready" "$log"; do sleep 0.05; done
    rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    echo "       $(sed -n 's/.*PDQ index ready \(.*\)/\1/p' "$log" | head -n 1), resident memory then $((rss_kb / 1024)) MiB"
    kill -TERM "$pid"
    wait "$pid"
done
