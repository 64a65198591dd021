#!/usr/bin/env bash
# `npm run containers:setup [-- --stop]`: a container engine for docker-compose.yml and the tests' containers
# path on a Debian machine without Docker. Where an engine already answers (Docker, or this script's own
# podman service from an earlier run) it changes nothing on the engine side. Otherwise, as root, it:
#   1. installs podman, debootstrap and docker-compose (v1.29, Debian's) with apt-get;
#   2. sets the two podman settings this machine needs (/etc/containers/containers.conf.d/stampede.conf);
#   3. builds the base images the Dockerfiles start from, under the official names, so nothing is pulled:
#      debian:bookworm-slim (debootstrap from the mirror apt uses) and node:20-bookworm-slim (that base plus
#      the Node.js this machine runs, the one the local stack runs too, and the certificate authorities
#      it trusts);
#   4. serves the Docker API on unix:///run/podman/podman.sock (never /var/run/docker.sock, so tools that
#      look for Docker keep not finding one). The project's containers paths find that socket themselves.
# `--stop` removes what the project's runs may have left in podman (containers, volumes and networks of the
# compose projects `stampede` and `stampede-test-*`, e.g. after an interrupted run) and stops the API
# service this script started (CI runs it at the end). See docs/docker.md.
set -euo pipefail

PODMAN_SOCKET=/run/podman/podman.sock
SERVICE_PID_FILE=/run/podman/stampede-api-service.pid
SERVICE_LOG=/run/podman/stampede-api-service.log
BASE_IMAGE=docker.io/library/debian:bookworm-slim
NODE_IMAGE=docker.io/library/node:20-bookworm-slim

log() { printf '[containers:setup +%ss] %s\n' "$SECONDS" "$*"; }

ping_socket() { curl -fsS --max-time 2 --unix-socket "$1" http://d/_ping >/dev/null 2>&1; }

stop_service() {
  if [ -f "$SERVICE_PID_FILE" ]; then
    pid=$(cat "$SERVICE_PID_FILE")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      log "stopped the podman API service (pid $pid)"
    fi
    rm -f "$SERVICE_PID_FILE"
  else
    log "no podman API service started by this script is running"
  fi
}

remove_leftovers() {
  command -v podman >/dev/null || return 0
  local project
  for project in $(podman ps -a --format '{{index .Labels "com.docker.compose.project"}}' | sort -u |
    grep -E '^stampede(-test-[0-9a-f]+)?$' || true); do
    podman ps -aq --filter "label=com.docker.compose.project=$project" | xargs -r podman rm -f >/dev/null
    podman volume ls -q --filter "label=com.docker.compose.project=$project" | xargs -r podman volume rm -f >/dev/null
    podman network ls -q --filter "label=com.docker.compose.project=$project" | xargs -r podman network rm >/dev/null
    log "removed the containers, volumes and network of compose project $project"
  done
}

if [ "${1:-}" = --stop ]; then
  remove_leftovers
  stop_service
  exit 0
fi

# A Docker engine that answers already (DOCKER_HOST, or the usual socket): nothing to do.
docker_socket=''
case "${DOCKER_HOST:-}" in
  unix://*) docker_socket="${DOCKER_HOST#unix://}" ;;
  '') docker_socket=/var/run/docker.sock ;;
esac
if [ -n "$docker_socket" ] && [ "$docker_socket" != "$PODMAN_SOCKET" ] && ping_socket "$docker_socket"; then
  log "a container engine answers on $docker_socket: nothing to set up"
  exit 0
fi
if [ -n "${DOCKER_HOST:-}" ] && [ -z "$docker_socket" ]; then
  log "DOCKER_HOST=$DOCKER_HOST is not a Unix socket: assuming its engine is set up"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "containers:setup installs podman and configures it: run it as root" >&2
  exit 1
fi

# 1. Packages.
need=()
command -v podman >/dev/null || need+=(podman)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# 2. Settings. Without the ulimits every container fails ("error setting rlimit type 7: operation not
# permitted": the defaults ask for more than this machine grants); without the exit delay each exec and
# healthcheck leaves conmon processes behind for 300 s.
mkdir -p /etc/containers/containers.conf.d
cat >/etc/containers/containers.conf.d/stampede.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
exit_command_delay = 5
CONF

# 3. Base images, under the names the Dockerfiles use (docs/docker.md: "Image names").
if ! podman image exists "$BASE_IMAGE"; then
  mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $3 ~ /^bookworm/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  fi
  mirror=${mirror:-http://deb.debian.org/debian}
  rootfs=$(mktemp -d /var/tmp/stampede-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -20 "$rootfs.log" >&2
    exit 1
  }
  rm -f "$rootfs.log"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  log "importing it as $BASE_IMAGE"
  tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
fi

if ! podman image exists "$NODE_IMAGE"; then
  node_bin=$(command -v node)
  node_major=$("$node_bin" -p 'process.versions.node.split(".")[0]')
  if [ "$node_major" != 20 ]; then
    echo "containers:setup: $NODE_IMAGE is built from this machine's Node.js 20, found $("$node_bin" --version)" >&2
    exit 1
  fi
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  context=$(mktemp -d /var/tmp/stampede-node-image.XXXXXX)
  trap 'rm -rf "$context"' EXIT
  cp "$(readlink -f "$node_bin")" "$context/node"
  cp -a "$npm_dir" "$context/npm"
  # The certificate authorities this machine trusts, for npm inside builds (a proxy that inspects TLS
  # presents its own authority; Node.js alone knows only its built-in list).
  cp "${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}" "$context/host-ca-certificates.crt"
  # The official image's layout: node and npm under /usr/local, an unprivileged `node` user (uid 1000).
  cat >"$context/Dockerfile" <<'DOCKERFILE'
FROM docker.io/library/debian:bookworm-slim
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY host-ca-certificates.crt /usr/local/share/stampede/host-ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/stampede/host-ca-certificates.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
  && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
  && groupadd --gid 1000 node \
  && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
  && node --version && npm --version
CMD ["node"]
DOCKERFILE
  log "building $NODE_IMAGE from $BASE_IMAGE and Node.js $("$node_bin" --version)"
  podman build --network host --quiet -t "$NODE_IMAGE" "$context" >/dev/null
  rm -rf "$context"
  trap - EXIT
fi

# 4. The Docker API.
if ping_socket "$PODMAN_SOCKET"; then
  log "the podman API answers on $PODMAN_SOCKET"
else
  mkdir -p "$(dirname "$PODMAN_SOCKET")"
  rm -f "$PODMAN_SOCKET"
  setsid podman system service --time=0 "unix://$PODMAN_SOCKET" >"$SERVICE_LOG" 2>&1 </dev/null &
  echo $! >"$SERVICE_PID_FILE"
  for _ in $(seq 100); do ping_socket "$PODMAN_SOCKET" && break; sleep 0.1; done
  ping_socket "$PODMAN_SOCKET" || {
    cat "$SERVICE_LOG" >&2
    exit 1
  }
  log "serving the Docker API on unix://$PODMAN_SOCKET (pid $(cat "$SERVICE_PID_FILE"); stop: npm run containers:setup -- --stop)"
fi
log "ready: npm run demo -- --runtime compose, STACK_RUNTIME=containers npm test"
