#!/usr/bin/env bash
# Build the datapool image and use it as the README's Docker section says, then remove what was
# made. Needs a running Docker engine (docker/engine.sh start), root or the docker group, and a
# Python with moto[server] for the S3 step (SMOKE_PYTHON, else python3, else .venv/bin/python).
#
#   bash docker/smoke.sh
#
# Where python:3.12-slim cannot be pulled (no registry), the base image is made here: a minimal
# Debian rootfs from this machine's own apt sources (debootstrap, with python3 and python3-venv),
# imported with `docker import` as datapool-smoke-base:<codename>. That base image and the build
# cache are kept, so a second run builds warm; SMOKE_CLEAN_ALL=1 removes them too.
# The steps and what each checks:
#   build      the image, with the CA bundle and pip's index settings as BuildKit secrets
#   version    docker run IMAGE --version
#   demo       `datapool demo` as a non-root --user, the pool on a bind-mounted folder
#   local      a run over /data mounted read-only; files added; the same line again (only the new
#              ones processed); once more: "nothing new" and the pool byte-identical
#   s3         a run over s3://my-bucket/raw on a moto server on the host network, credentials
#              passed by name; again: "nothing new", byte-identical; no credential in the pool
#   stop       docker stop (SIGTERM) during a run: exit 143 and the pool byte-identical
#   layers     docker save: non-root user, no compiler, no CA bundle of this machine, no credential
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-datapool-smoke:latest}
SLIM=python:3.12-slim
T0=$(date +%s.%N)
TIMES=()
MADE_BASE=""

say() { printf '[smoke] %s\n' "$*"; }
die() {
    printf 'smoke: FAILED: %s\n' "$*" >&2
    exit 1
}
step() { # step NAME: starts timing NAME; the previous step's time is recorded
    local now
    now=$(date +%s.%N)
    if [ -n "${STEP:-}" ]; then TIMES+=("$(awk -v n="$STEP" -v a="$now" -v b="$STEP_T" 'BEGIN { printf "%-8s %6.1f s", n, a - b }')"); fi
    STEP=$1 STEP_T=$now
    [ -n "$STEP" ] && say "$STEP"
    return 0
}
# The pool folder's every entry, with the checksum of every file: equal listings = byte-identical.
snapshot() { (cd "$1" && find . -printf '%y %p\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); }

# ---- the Docker client: BuildKit is needed for the build's secrets ------------------------------
command -v docker >/dev/null || die "no docker client (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start one: bash docker/engine.sh start)"
if docker buildx version >/dev/null 2>&1; then
    BUILD=(docker buildx build --load)
else # a client without buildx: one that still has BuildKit built in (Docker < 23, as docker.io's)
    BUILD=()
    for c in docker /usr/bin/docker; do
        v=$("$c" version --format '{{.Client.Version}}' 2>/dev/null) || continue
        if [ "${v%%.*}" -lt 23 ]; then BUILD=(env DOCKER_BUILDKIT=1 "$c" build) && break; fi
    done
    [ ${#BUILD[@]} -gt 0 ] || die "BuildKit is needed: install docker-buildx (or docker.io's client)"
fi

# ---- a Python with moto for the S3 step ----------------------------------------------------------
PY=""
for p in "${SMOKE_PYTHON:-}" python3 .venv/bin/python; do
    if [ -n "$p" ] && "$p" -c 'import moto.server, boto3' 2>/dev/null; then PY=$p && break; fi
done
[ -n "$PY" ] || die "no Python with moto[server] (set SMOKE_PYTHON; pip install 'moto[server]')"

# ---- scratch space, the user the containers run as, and the cleanup -------------------------------
W=$(mktemp -d /tmp/datapool-smoke.XXXXXX)
U="$(id -u):$(id -g)"
[ "$(id -u)" != 0 ] || U=4242:4242 # as root: still a non-root user in the container
MOTO_PID=""
cleanup() {
    local rc=$?
    set +e
    [ -z "$MOTO_PID" ] || kill "$MOTO_PID" 2>/dev/null
    docker rm -f datapool-smoke-stop >/dev/null 2>&1
    [ "${SMOKE_KEEP_IMAGE:-0}" = 1 ] || docker rmi "$IMAGE" >/dev/null 2>&1
    if [ "${SMOKE_CLEAN_ALL:-0}" = 1 ]; then
        [ -z "$MADE_BASE" ] || docker rmi "$MADE_BASE" >/dev/null 2>&1
        docker builder prune -af >/dev/null 2>&1
    fi
    rm -rf "$W"
    [ "$rc" = 0 ] || printf 'smoke: exit %s (the step that failed: %s)\n' "$rc" "${STEP:-setup}" >&2
    exit "$rc"
}
trap cleanup EXIT
mkdir -p "$W/demo" "$W/bucket" "$W/pool" "$W/s3pool" "$W/secrets"
[ "$(id -u)" != 0 ] || chown -R "$U" "$W"
cp docker/smoke_media.py "$W/smoke_media.py"
chmod a+r "$W/smoke_media.py"

# ---- the base image -----------------------------------------------------------------------------
step base
BASE=${BASE_IMAGE:-$SLIM}
if ! docker image inspect "$BASE" >/dev/null 2>&1 && ! timeout 120 docker pull -q "$BASE" >/dev/null 2>&1; then
    [ -z "${BASE_IMAGE:-}" ] || die "BASE_IMAGE=$BASE can neither be found nor pulled"
    # shellcheck source=/dev/null
    . /etc/os-release
    BASE=datapool-smoke-base:$VERSION_CODENAME
    if ! docker image inspect "$BASE" >/dev/null 2>&1; then
        echo "$SLIM cannot be pulled: making $BASE with debootstrap from this machine's apt sources"
        [ "$(id -u)" = 0 ] || die "debootstrap needs root"
        if ! command -v debootstrap >/dev/null; then
            apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
        fi
        # The mirror that apt here uses for the release itself (not -updates or -security).
        MIRROR=$(apt-cache policy | awk -v s="$VERSION_CODENAME/main" '$3 == s && /Packages/ {print $2; exit}')
        [ -n "$MIRROR" ] || die "no apt source for $VERSION_CODENAME/main in apt-cache policy"
        R="$W/rootfs"
        debootstrap --variant=minbase --include=python3,python3-venv "$VERSION_CODENAME" "$R" "$MIRROR" \
            >"$W/debootstrap.log" 2>&1 || {
            tail -20 "$W/debootstrap.log"
            die "debootstrap"
        }
        # As slim images do: no package caches, lists, docs or locales; no facts of this host.
        rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin "$R"/var/lib/apt/lists/* \
            "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/locale/* \
            "$R"/etc/resolv.conf "$R"/etc/hostname
        tar -C "$R" --numeric-owner -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$BASE" >/dev/null
        rm -rf "$R"
        MADE_BASE=$BASE
    fi
fi
echo "base image: $BASE"

# ---- build: this machine's CA bundle and pip's index settings go in as BuildKit secrets ----------
step build
CA=${SMOKE_CA_BUNDLE:-${PIP_CERT:-$("$PY" -m pip config get global.cert 2>/dev/null || true)}}
CA=${CA:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
SECRETS=()
[ ! -s "$CA" ] || SECRETS+=(--secret "id=ca,src=$CA")
# pip's index settings (config files and PIP_* variables), the ones a build can reach: http(s) URLs.
"$PY" - "$W/secrets/pip.conf" <<'EOF'
import re, subprocess, sys
out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
keep = {}
for line in out.splitlines():
    m = re.match(r"^[^.]*\.(index-url|extra-index-url|trusted-host)='(.*)'$", line)
    if m:
        vals = [v for v in m.group(2).split() if m.group(1) == "trusted-host" or v.startswith(("http://", "https://"))]
        if vals:
            keep[m.group(1)] = " ".join(vals)
if keep:
    with open(sys.argv[1], "w") as f:
        f.write("[global]\n" + "".join(f"{k} = {v}\n" for k, v in keep.items()))
EOF
[ ! -s "$W/secrets/pip.conf" ] || SECRETS+=(--secret "id=pipconf,src=$W/secrets/pip.conf")
PROXY_ARGS=()
for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
    [ -z "${!v:-}" ] || PROXY_ARGS+=(--build-arg "$v") # predefined: kept out of the image's history
done
echo "secrets: ${SECRETS[*]:-none}"
"${BUILD[@]}" -f docker/Dockerfile -t "$IMAGE" --build-arg BASE_IMAGE="$BASE" "${SECRETS[@]}" "${PROXY_ARGS[@]}" . \
    >"$W/build.log" 2>&1 || {
    tail -40 "$W/build.log"
    die "docker build"
}
SIZE=$(docker image inspect -f '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $((SIZE / 1000000)) MB"

# ---- the README's lines, in its order -------------------------------------------------------------
step version
docker run --rm "$IMAGE" --version | tee "$W/out"
grep -q '^datapool ' "$W/out" || die "--version"

step demo
docker run --rm --user "$U" -v "$W/demo:/pool" "$IMAGE" demo | tee "$W/out"
grep -q '^embedding views' "$W/out" || die "demo"
[ -s "$W/demo/datapool-demo/pool/runs/1/embedding_view.png" ] || die "demo: no view of run 1"
[ "$(stat -c %u:%g "$W/demo/datapool-demo/pool/runs.json")" = "$U" ] || die "demo: pool files not owned by --user $U"

step local
media() { docker run --rm --user "$U" -v "$W/bucket:/out" -v "$W/smoke_media.py:/smoke_media.py:ro" --entrypoint python "$IMAGE" /smoke_media.py "$@"; }
media /out day 6 8 1
docker run --rm --user "$U" -v "$W/bucket:/data:ro" -v "$W/pool:/pool" "$IMAGE" run /data --pool /pool --n-samples 20 --no-progress | tee "$W/out"
grep -Eq '^new +14 new, 0 changed, 0 unchanged' "$W/out" || die "local: first run"
media /out night 2 3 2
docker run --rm --user "$U" -v "$W/bucket:/data:ro" -v "$W/pool:/pool" "$IMAGE" run /data --pool /pool --n-samples 20 --no-progress | tee "$W/out"
grep -Eq '^new +5 new, 0 changed, 14 unchanged' "$W/out" || die "local: only the 5 new files"
snapshot "$W/pool" >"$W/before"
docker run --rm --user "$U" -v "$W/bucket:/data:ro" -v "$W/pool:/pool" "$IMAGE" run /data --pool /pool --n-samples 20 --no-progress | tee "$W/out"
grep -q '^nothing new' "$W/out" || die "local: third run is not 'nothing new'"
snapshot "$W/pool" | cmp -s - "$W/before" || die "local: 'nothing new' changed the pool"

step s3
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" -m moto.server -H 127.0.0.1 -p "$PORT" >"$W/moto.log" 2>&1 &
MOTO_PID=$!
export AWS_ACCESS_KEY_ID="AKIASMOKE$RANDOM$RANDOM" AWS_SECRET_ACCESS_KEY="smoke-secret-$RANDOM-$RANDOM-$RANDOM"
export AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
unset AWS_SESSION_TOKEN AWS_PROFILE
"$PY" - "$W/bucket" <<'EOF'
import sys, time
from pathlib import Path
import boto3
s3 = boto3.client("s3")
for _ in range(300):  # moto's server takes a few seconds to start
    try:
        s3.create_bucket(Bucket="my-bucket")
        break
    except Exception:
        time.sleep(0.1)
root = Path(sys.argv[1])
for p in sorted(root.rglob("*")):
    if p.is_file():
        s3.upload_file(str(p), "my-bucket", "raw/" + p.relative_to(root).as_posix())
EOF
docker run --rm --user "$U" --network host -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_SESSION_TOKEN -e AWS_DEFAULT_REGION -e AWS_ENDPOINT_URL -v "$W/s3pool:/pool" "$IMAGE" run s3://my-bucket/raw --pool /pool --n-samples 100 | tee "$W/out"
grep -Eq '^new +19 new, 0 changed, 0 unchanged' "$W/out" || die "s3: first run"
snapshot "$W/s3pool" >"$W/before"
docker run --rm --user "$U" --network host -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_SESSION_TOKEN -e AWS_DEFAULT_REGION -e AWS_ENDPOINT_URL -v "$W/s3pool:/pool" "$IMAGE" run s3://my-bucket/raw --pool /pool --n-samples 100 | tee "$W/out"
grep -q '^nothing new' "$W/out" || die "s3: second run is not 'nothing new'"
snapshot "$W/s3pool" | cmp -s - "$W/before" || die "s3: 'nothing new' changed the pool"
! grep -rlF -e "$AWS_ACCESS_KEY_ID" -e "$AWS_SECRET_ACCESS_KEY" "$W/s3pool" || die "s3: a credential is in the pool"
echo "no credential in the pool"
kill "$MOTO_PID" && wait "$MOTO_PID" 2>/dev/null || true
MOTO_PID=""

step stop
# 24,000 frames: one long video under 40 names (hard links: free), far more than a run does in the
# seconds before docker stop. Then the README's local line again.
media /out long 1 0 3 600
for i in $(seq 1 39); do ln "$W/bucket/long/long-00.mp4" "$W/bucket/long/long-$i.mp4"; done
snapshot "$W/pool" >"$W/before"
docker run -d --name datapool-smoke-stop --user "$U" -v "$W/bucket:/data:ro" -v "$W/pool:/pool" "$IMAGE" run /data --pool /pool --n-samples 20 --no-progress >/dev/null
sleep "${SMOKE_STOP_AFTER:-6}"
[ "$(docker inspect -f '{{.State.Running}}' datapool-smoke-stop)" = true ] || {
    docker logs datapool-smoke-stop
    die "stop: the run ended before docker stop (give it more to do)"
}
docker stop -t 30 datapool-smoke-stop >/dev/null
rc=$(docker inspect -f '{{.State.ExitCode}}' datapool-smoke-stop)
docker logs datapool-smoke-stop 2>&1 | grep -v telemetry | tail -3
docker rm datapool-smoke-stop >/dev/null
[ "$rc" = 143 ] || die "stop: exit $rc, expected 143 (128 + SIGTERM)"
snapshot "$W/pool" | cmp -s - "$W/before" || die "stop: the pool changed"
echo "exit 143; the pool is byte-identical"

step layers
[ "$(docker image inspect -f '{{.Config.User}}' "$IMAGE")" = 10001:10001 ] || die "layers: the image's user is not 10001"
[ "$(docker run --rm --entrypoint id "$IMAGE" -u)" = 10001 ] || die "layers: not run as uid 10001"
mkdir "$W/image" "$W/fs"
docker save "$IMAGE" | tar -C "$W/image" -x
# Each layer unpacked over the ones below it, its listing (whiteouts included) kept; then only the
# image's JSON (config, history, manifests) is left beside them. The manifest names the layers in
# both `docker save` formats (legacy folders, OCI blobs).
"$PY" -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))[0]["Layers"]))' "$W/image/manifest.json" >"$W/layers"
while read -r layer; do
    tar -C "$W/fs" --no-same-owner -xvf "$W/image/$layer" 2>/dev/null || true
    rm -f "$W/image/$layer"
done <"$W/layers" >"$W/listing"
! grep -E '(^|/)(gcc|g\+\+|cc|c\+\+|clang|cc1|cc1plus|x86_64-linux-gnu-(gcc|g\+\+)(-[0-9]+)?)$' "$W/listing" ||
    die "layers: a compiler is in the image"
echo "no compiler"
# This machine's own CAs (the local additions, e.g. a TLS-intercepting proxy's) and the bundle
# handed to the build: no layer holds either.
if [ -s "$CA" ]; then
    ! find "$W/fs" -type f -size "$(stat -c %s "$CA")c" -exec cmp -s "$CA" {} \; -print | grep . ||
        die "layers: the build's CA bundle is in the image"
    PATTERNS=()
    for crt in /usr/local/share/ca-certificates/*.crt; do
        [ ! -f "$crt" ] || PATTERNS+=(-e "$(sed -n '3p' "$crt")") # a line of its base64 body
    done
    [ ${#PATTERNS[@]} = 0 ] || ! grep -rlF "${PATTERNS[@]}" "$W/fs" "$W/image" ||
        die "layers: a CA of /usr/local/share/ca-certificates is in the image"
fi
echo "no CA bundle of this machine"
! grep -rlF -e "$AWS_ACCESS_KEY_ID" -e "$AWS_SECRET_ACCESS_KEY" "$W/fs" "$W/image" || die "layers: a credential is in the image"
echo "no credential"
step ""

say "image $IMAGE: $((SIZE / 1000000)) MB ($BASE)"
printf '%s\n' "${TIMES[@]}"
awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN { printf "total    %6.1f s\n", a - b }'
echo "smoke: OK"
