#!/usr/bin/env bash
# Memory and CPU footprint of pgpool-rs, for sizing container resources
# (config/k8s): RSS idle and under 1000 pgbench clients (select-only, simple
# protocol, SCRAM, pool_size 20), CPU seconds used meanwhile. Starts a throwaway
# PostgreSQL (max_connections 200) on free ports; as root it runs as `postgres`.
# Usage: bench/footprint.sh target/release/pgpool-rs
set -euo pipefail
BIN=$(realpath "$1")
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
W=$(mktemp -d /tmp/pgpool-measure.XXXX)
if [ "$(id -u)" = 0 ]; then chown postgres "$W"; fi
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PG=$(free_port); PP=$(free_port); HP=$(free_port)
if [ "$(id -u)" = 0 ]; then
  runpg() { runuser -u postgres -- "$@"; }
else
  runpg() { "$@"; }
fi
runpg "$PGBIN/initdb" -D "$W/data" -U postgres --auth=trust >/dev/null
runpg "$PGBIN/pg_ctl" -D "$W/data" -l "$W/pg.log" -w -o "-p $PG -k $W -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB" start >/dev/null
cleanup() { if [ -n "${POOLER:-}" ]; then kill "$POOLER" 2>/dev/null || true; fi; runpg "$PGBIN/pg_ctl" -D "$W/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$W"; }
trap cleanup EXIT
psql -h 127.0.0.1 -p "$PG" -U postgres -qc "CREATE ROLE bench LOGIN PASSWORD 'bench-pass'" -c "CREATE DATABASE bench OWNER bench" >/dev/null
PGPASSWORD=bench-pass pgbench -h 127.0.0.1 -p "$PG" -U bench -i -s 10 -q bench >/dev/null 2>&1
cat > "$W/pool.toml" <<TOML
[listen]
addr = "127.0.0.1:$PP"
http_addr = "127.0.0.1:$HP"
max_client_conn = 1100
[auth]
type = "scram-sha-256"
file = "userlist.txt"
[pool]
default_pool_size = 20
server_tls = "disable"
[databases.bench]
host = "127.0.0.1"
port = $PG
TOML
echo '"bench" "bench-pass"' > "$W/userlist.txt"
# ~2 file descriptors per client.
ulimit -n "$(ulimit -Hn)"
RUST_LOG=warn "$BIN" --config "$W/pool.toml" 2>"$W/pooler.log" &
POOLER=$!
for _ in $(seq 50); do "$BIN" health --url "http://127.0.0.1:$HP/health/ready" >/dev/null 2>&1 && break; sleep 0.2; done
rss() { awk -v k="$1:" '$1==k {print $2}' "/proc/$POOLER/status"; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$POOLER/stat"; }
echo "idle:            VmRSS $(rss VmRSS) kB  VmHWM $(rss VmHWM) kB"
# One warm-up transaction per connection path.
PGPASSWORD=bench-pass pgbench -h 127.0.0.1 -p "$PP" -U bench -c 10 -j 2 -S -T 2 -M simple bench >/dev/null 2>&1
echo "after warm-up:   VmRSS $(rss VmRSS) kB  VmHWM $(rss VmHWM) kB"
t0=$(cpu_ticks); s0=$(date +%s.%N)
PGPASSWORD=bench-pass pgbench -h 127.0.0.1 -p "$PP" -U bench -c 1000 -j 4 -S -T 20 -M simple bench >"$W/pgbench.out" 2>&1 &
BENCH=$!
maxrss=0
while kill -0 "$BENCH" 2>/dev/null; do
  r=$(rss VmRSS); [ "$r" -gt "$maxrss" ] && maxrss=$r
  sleep 1
done
wait "$BENCH" || { cat "$W/pgbench.out"; exit 1; }
t1=$(cpu_ticks); s1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
grep -E "number of (clients|transactions actually)|tps|latency average|failed" "$W/pgbench.out"
echo "1000 clients:    max sampled VmRSS $maxrss kB  VmHWM $(rss VmHWM) kB"
awk -v t="$((t1 - t0))" -v hz="$hz" -v s0="$s0" -v s1="$s1" 'BEGIN { c=t/hz; w=s1-s0; printf "pooler CPU:      %.1f s over %.1f s wall = %.2f cores (incl. 1000 SCRAM logins)\n", c, w, c/w }'
sleep 2
echo "after clients left: VmRSS $(rss VmRSS) kB"
