#!/usr/bin/env bash
# TLS cost: pgbench -S through pgpool-rs and PgBouncer (client TLS, ECDSA P-256 cert),
# plaintext vs sslmode=require, interleaved, 2 rounds; then connection rate (-C).
# Needs: cargo build --release, pgbouncer, openssl, ../shared/bench/pg.sh. Run as root.
# The cluster stays in $B/pgdir for reruns; stop it with pg.sh stop "$(cat $B/pgdir)".
set -euo pipefail
B=${TLS_BENCH_WORK:-/tmp/tlsbench}; mkdir -p $B
BIN=${PGPOOL_BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/pgpool-rs}
BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "$0")/.." && pwd)/../shared/bench}
cd $B
if [ ! -f $B/pgdir ]; then
  $BENCH_DIR/pg.sh start --scale 10 | tail -n 1 > $B/pgdir
fi
PGDIR=$(cat $B/pgdir)
set -a; . $PGDIR/bench.env; set +a
PGBENCH=$PG_BIN/pgbench
# certificate (ECDSA P-256, self-signed) for both poolers
[ -f $B/server.crt ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout $B/server.key -out $B/server.crt -days 30 -subj /CN=localhost 2>/dev/null
chown postgres $B/server.key $B/server.crt; chmod 600 $B/server.key; chmod 755 $B
echo '"bench" "bench"' > $B/userlist.txt; chown postgres $B/userlist.txt
cat > $B/pool.toml <<T
[listen]
addr = "127.0.0.1:6501"
max_client_conn = 2000
client_tls = "prefer"
tls_cert = "$B/server.crt"
tls_key = "$B/server.key"
http_addr = ""
[auth]
type = "scram-sha-256"
file = "$B/userlist.txt"
[pool]
mode = "transaction"
default_pool_size = 20
server_tls = "disable"
[databases.bench]
host = "127.0.0.1"
port = $PGPORT
dbname = "bench"
T
cat > $B/pgbouncer.ini <<T
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6502
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $B/userlist.txt
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 20
max_db_connections = 0
log_connections = 0
log_disconnections = 0
client_tls_sslmode = prefer
client_tls_key_file = $B/server.key
client_tls_cert_file = $B/server.crt
server_tls_sslmode = disable
T
chown postgres $B/pgbouncer.ini
RUST_LOG=warn $BIN --config $B/pool.toml > $B/pgpool.log 2>&1 & PGPOOL=$!
runuser -u postgres -- /usr/sbin/pgbouncer $B/pgbouncer.ini > $B/pgbouncer.log 2>&1 & PGB=$!
sleep 1
trap 'kill $PGPOOL $PGB 2>/dev/null' EXIT
run() { # name port sslmode extra...
  local name=$1 port=$2 ssl=$3; shift 3
  local out
  out=$(PGPASSWORD=bench PGSSLMODE=$ssl $PGBENCH -h 127.0.0.1 -p $port -U bench -n "$@" bench 2>&1)
  local tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
  local fail=$(echo "$out" | sed -n 's/.*number of failed transactions: \([0-9]*\).*/\1/p')
  echo "$name ssl=$ssl args=[$*] tps=$tps failed=${fail:-?}"
}
for round in 1 2; do
  for ssl in disable require; do
    run pgpool-rs 6501 $ssl -S -c 100 -j 4 -T 15
    run pgbouncer 6502 $ssl -S -c 100 -j 4 -T 15
  done
done
for round in 1 2; do
  for ssl in disable require; do
    run pgpool-rs 6501 $ssl -C -S -c 10 -j 2 -T 15
    run pgbouncer 6502 $ssl -C -S -c 10 -j 2 -T 15
  done
done
