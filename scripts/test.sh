#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: makes sure RabbitMQ and Redis
# run on 127.0.0.1 (installing them from Debian's packages when missing), then
# runs formatting and lint checks and every test of the workspace.
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -p redcloud-engine   # extra args go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 what=$2 i
  for i in $(seq 1 120); do
    if port_open "$port"; then return 0; fi
    sleep 1
  done
  log "$what did not open 127.0.0.1:$port within 120 s"
  return 1
}

apt_install() {
  if ! command -v apt-get >/dev/null; then
    log "cannot install $*: no apt-get; install it and rerun"
    return 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null
}

ensure_redis() {
  if port_open 6379; then return 0; fi
  command -v redis-server >/dev/null || { log "installing redis-server"; apt_install redis-server; }
  log "starting redis-server"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port 6379 redis
}

ensure_rabbitmq() {
  if port_open 5672; then return 0; fi
  command -v rabbitmq-server >/dev/null || { log "installing rabbitmq-server"; apt_install rabbitmq-server; }
  log "starting rabbitmq-server"
  rabbitmq-server -detached
  wait_port 5672 rabbitmq
  # The AMQP port opens before the broker accepts connections fully.
  rabbitmqctl await_startup >/dev/null 2>&1 || sleep 5
}

ensure_redis
ensure_rabbitmq

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked "$@"
