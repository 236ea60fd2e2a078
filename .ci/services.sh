#!/usr/bin/env bash
# Make sure the services the tests use answer: PostgreSQL (127.0.0.1:5432, trust auth,
# database `test`) and Redis (127.0.0.1:6379). Start them if they are installed but down;
# install them from Debian's packages on a machine that has neither.
set -uo pipefail

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_ready=0
apt_install() {
  if [ "$apt_ready" = 0 ]; then as_root apt-get update -qq; apt_ready=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}
wait_for() {
  for _ in $(seq 1 30); do answers "$1" && return 0; sleep 1; done
  echo "service on port $1 did not come up" >&2; return 1
}

if ! answers 5432; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "installing PostgreSQL"
    apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q "lakeforge-ci" "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust # lakeforge-ci\nhost all all ::1/128 trust # lakeforge-ci' "$hba"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for 5432
  as_root su postgres -c "psql -h 127.0.0.1 -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\"" | grep -q 1 \
    || as_root su postgres -c "createdb -h 127.0.0.1 test"
fi

if ! answers 6379; then
  command -v redis-server >/dev/null || { echo "installing Redis"; apt_install redis-server; }
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for 6379
fi
echo "services: PostgreSQL and Redis answer"
