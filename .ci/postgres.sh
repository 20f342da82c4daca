#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, on a free loopback port.
#
#   eval "$(bash .ci/postgres.sh start DIR)"   # exports PHOTOCLAIM_TEST_DATABASE_URL
#   bash .ci/postgres.sh stop DIR
#   bash .ci/postgres.sh pause DIR / resume DIR   # stop and start it again, same port
#
# start: installs the Debian package `postgresql` if initdb is missing (as
# root, with apt-get), makes a cluster in DIR with initdb (as the
# `postgres` user when run as root: initdb refuses root), starts it with
# pg_ctl on 127.0.0.1 and a free port, trust authentication on loopback
# only, and prints the export of the URL of its `postgres` database. The
# tests make a database of their own per test from it.
# With PG_TLS=1, start also makes a CA and a server certificate for
# 127.0.0.1 with openssl, turns ssl on, and prints the CA's path too
# (PHOTOCLAIM_TEST_DATABASE_CA).
# stop: stops the cluster in DIR (fast shutdown) and removes DIR.
# pause/resume: stop the cluster (fast shutdown: sessions are cut) and start
# it again on the same port (the fault tests: a database restarted under
# load).
set -euo pipefail

cmd=${1:?usage: postgres.sh start|stop DIR}
dir=${2:?usage: postgres.sh start|stop DIR}

find_bin() {
    local name=$1
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return
    fi
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n 1 || true)
    [[ -n $found ]] && echo "$found"
}

as_owner() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case $cmd in
start)
    if [[ -z $(find_bin initdb) ]]; then
        echo "postgres.sh: installing the Debian package postgresql" >&2
        apt-get update -q >&2 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    fi
    initdb=$(find_bin initdb)
    pg_ctl=$(find_bin pg_ctl)
    [[ -n $initdb && -n $pg_ctl ]] || { echo "postgres.sh: no initdb/pg_ctl" >&2; exit 1; }
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$dir"
    if [[ $(id -u) == 0 ]]; then
        chown postgres: "$dir"
    fi
    as_owner "$initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    opts="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=300 -c fsync=on"
    if [[ ${PG_TLS:-} == 1 ]]; then
        # A CA and a server certificate for 127.0.0.1 made with openssl;
        # the CA's file is exported for the clients.
        tls=$dir/tls
        mkdir -p "$tls"
        (
            cd "$tls"
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
                -subj "/CN=photoclaim test CA" -addext "basicConstraints=critical,CA:TRUE" \
                -addext "keyUsage=critical,keyCertSign,cRLSign"
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=127.0.0.1"
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt \
                -days 2 -extfile ext
        ) >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; exit 1; }
        chmod 600 "$tls/server.key"
        chmod 644 "$tls/ca.pem"
        if [[ $(id -u) == 0 ]]; then
            chown -R postgres: "$tls"
        fi
        opts="$opts -c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key"
    fi
    echo "$opts" >"$dir/opts"
    as_owner "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "$opts" -w -t 60 start >&2 ||
        { cat "$dir/server.log" >&2; exit 1; }
    echo "export PHOTOCLAIM_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres"
    if [[ ${PG_TLS:-} == 1 ]]; then
        echo "export PHOTOCLAIM_TEST_DATABASE_CA=$dir/tls/ca.pem"
    fi
    ;;
stop)
    pg_ctl=$(find_bin pg_ctl)
    if [[ -d $dir/data ]]; then
        as_owner "$pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$dir"
    ;;
pause)
    as_owner "$(find_bin pg_ctl)" -D "$dir/data" -m fast -w stop >&2
    ;;
resume)
    as_owner "$(find_bin pg_ctl)" -D "$dir/data" -l "$dir/server.log" -o "$(cat "$dir/opts")" -w -t 60 start >&2
    ;;
*)
    echo "usage: postgres.sh start|stop|pause|resume DIR" >&2
    exit 2
    ;;
esac
