# Sourced by scripts/test: make sure PostgreSQL and Redis answer, starting them if this
# machine has them installed. Under CI=true the tests that need them fail (not skip) when
# they are unreachable, so a missing service is never a silent pass.
pg_up() { python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", 5432)) == 0 else 1)
PY
}
redis_up() { python3 - <<'PY'
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect(("127.0.0.1", 6379)); s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(7).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

if ! pg_up && command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 20); do pg_up && break; sleep 0.5; done
fi
if ! redis_up && command -v redis-server >/dev/null 2>&1; then
  echo "services: starting Redis" >&2
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp --logfile /tmp/orders-api-redis.log || true
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
fi
pg_up && echo "services: PostgreSQL reachable" >&2 || echo "services: PostgreSQL NOT reachable" >&2
redis_up && echo "services: Redis reachable" >&2 || echo "services: Redis NOT reachable" >&2
