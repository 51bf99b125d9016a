#!/usr/bin/env bash
# Debian packages and local services the test suite needs. Idempotent; quiet when all is there.
set -u

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {  # port, name, command...
  local port=$1 name=$2; shift 2
  up "$port" && return 0
  echo "starting $name on 127.0.0.1:$port"
  "$@" >/dev/null 2>&1 || true
  for _ in $(seq 1 60); do up "$port" && return 0; sleep 0.5; done
  echo "warning: $name is not answering on 127.0.0.1:$port; the tests that need it will fail naming it" >&2
}

start 5432 postgresql pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql 2>/dev/null | head -1)" main start
start 3306 mariadb start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
start 6379 redis redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
  --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
start 5672 rabbitmq rabbitmq-server -detached
start 1883 mosquitto mosquitto -d -c /etc/mosquitto/mosquitto.conf
start 4222 nats start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
  -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
exit 0
