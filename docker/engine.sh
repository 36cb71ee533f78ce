#!/usr/bin/env bash
# A Docker engine for docker/smoke.sh (CI calls it; so can you):
#
#   bash docker/engine.sh start   # 0 once an engine answers; else 1 and one line that says why
#   bash docker/engine.sh stop    # stops the dockerd that `start` started, if any
#
# `start` uses the engine that answers already; else (as root) installs docker.io with apt where
# dockerd is missing and starts dockerd in the background, its log in $DOCKERD_DIR/dockerd.log.
set -uo pipefail
DIR=${DOCKERD_DIR:-/tmp/datapool-dockerd}

start() {
    docker info >/dev/null 2>&1 && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "no Docker engine answers, and only root may start one here"
        return 1
    fi
    mkdir -p "$DIR"
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
        if ! { apt-get update && apt-get install -y docker.io; } >"$DIR/apt.log" 2>&1; then
            echo "apt-get install docker.io failed: $(tail -1 "$DIR/apt.log")"
            return 1
        fi
    fi
    dockerd >"$DIR/dockerd.log" 2>&1 &
    echo $! >"$DIR/dockerd.pid"
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return 0
        kill -0 "$(cat "$DIR/dockerd.pid")" 2>/dev/null || break
        sleep 1
    done
    echo "dockerd did not start: $(grep -E 'level=(error|fatal)|failed' "$DIR/dockerd.log" | tail -1)"
    stop
    return 1
}

stop() {
    [ -f "$DIR/dockerd.pid" ] || return 0
    pid=$(cat "$DIR/dockerd.pid")
    rm -f "$DIR/dockerd.pid"
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
    echo "usage: bash docker/engine.sh start|stop" >&2
    exit 2
    ;;
esac
