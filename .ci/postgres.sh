#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: 127.0.0.1, a free port, a temp dir, no password.
#
#   .ci/postgres.sh run CMD...   start one, run CMD with BOLTRL_TEST_POSTGRES_URL set, stop it (always)
#   .ci/postgres.sh start DIR    start one in DIR (empty or missing) and print its URL
#   .ci/postgres.sh stop DIR     stop it and delete DIR
#
# Debian's postgresql is installed with apt-get when it is missing and we are root (as `make browser`
# does for chromium). PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres`
# user. Without PostgreSQL, `run` runs CMD anyway and the postgres tests skip, saying why.
set -euo pipefail

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return 0; fi
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then dirname "$(command -v initdb)"; fi
}

ensure_installed() {
    [ -n "$(pg_bin)" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "postgres.sh: PostgreSQL is missing and this is not root: run 'sudo apt-get install" \
            "postgresql', or the postgres tests skip" >&2
        return 1
    fi
    echo "postgres.sh: installing Debian's postgresql" >&2
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        postgresql; } >&2 || { echo "postgres.sh: apt-get could not install postgresql" >&2; return 1; }
    [ -n "$(pg_bin)" ]
}

# Run a PostgreSQL binary as a user it accepts: ourselves, or `postgres` when we are root.
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1 bin port
    ensure_installed || return 1
    bin=$(pg_bin)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    as_owner "$bin/initdb" -D "$dir/data" -U boltrl --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; return 1; }
    port=$(free_port)
    # fsync off: a test cluster need not survive a power cut, and it makes every commit much cheaper.
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start -o \
        "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        >&2 || { cat "$dir/server.log" >&2; return 1; }
    echo "postgresql://boltrl@127.0.0.1:$port/postgres"
}

stop() {
    local dir=$1 bin
    bin=$(pg_bin)
    if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start "$2" ;;
    stop) stop "$2" ;;
    run)
        shift
        dir=$(mktemp -d -t boltrl-pg.XXXXXX)
        trap 'set +e; stop "$dir"' EXIT  # also when CMD fails
        trap 'exit 130' INT
        trap 'exit 143' TERM
        if url=$(start "$dir"); then
            echo "postgres.sh: test PostgreSQL at $url" >&2
            export BOLTRL_TEST_POSTGRES_URL=$url
        else
            echo "postgres.sh: no test PostgreSQL; the postgres tests skip" >&2
        fi
        "$@"
        ;;
    *) echo "usage: $0 run CMD... | start DIR | stop DIR" >&2; exit 2 ;;
esac
