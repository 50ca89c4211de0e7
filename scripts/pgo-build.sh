#!/usr/bin/env bash
# pgo-build.sh [OUT] — a profile-guided release build of pgpool-rs.
#
#   1. builds an instrumented release binary (target/pgo-generate);
#   2. trains it: `pgpool-rs demo` (a throwaway local PostgreSQL with the instrumented
#      pooler in front) under pgbench, simple and extended protocol, 10 and 100 clients,
#      read-only and read-write;
#   3. rebuilds with the merged profile (target/pgo-use) and copies the binary to OUT
#      (default: target/pgo/pgpool-rs).
#
# Measured on the 2-core development machine (README, Performance): about 18% fewer
# instructions per transaction and 20-30% less user CPU than the plain release build.
# Needs what `pgpool-rs demo` needs (PostgreSQL server binaries, pgbench) and the
# llvm-tools rustup component (installed here when missing). Takes two release builds
# plus about 40 s of training.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-target/pgo/pgpool-rs}
secs=${PGO_TRAIN_SECS:-5}

die() { echo "pgo-build: $*" >&2; exit 1; }
log() { echo "pgo-build: $*" >&2; }

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  log "installing the llvm-tools component (llvm-profdata)"
  rustup component add llvm-tools >&2
fi
[ -x "$profdata" ] || die "no llvm-profdata at $profdata"

if ! command -v pgbench >/dev/null; then
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$pgbin" ] && PATH="$PATH:$pgbin"
fi
command -v pgbench >/dev/null || die "pgbench not found (install PostgreSQL's client tools)"

work=$(mktemp -d)
demo=""
cleanup() {
  if [ -n "$demo" ] && kill -0 "$demo" 2>/dev/null; then
    kill -INT "$demo" 2>/dev/null || true
    wait "$demo" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

log "1/3 instrumented build"
RUSTFLAGS="-Cprofile-generate=$work/build-profiles" \
  cargo build --release --locked --bin pgpool-rs --target-dir target/pgo-generate >&2

log "2/3 training under pgpool-rs demo"
# The pooler may run as another user than this script (as root, PostgreSQL runs as
# `postgres`; the pooler stays root, but keep the directory open to be safe).
mkdir -m 0777 "$work/profiles"
LLVM_PROFILE_FILE="$work/profiles/pgpool-rs-%p-%m.profraw" \
  target/pgo-generate/release/pgpool-rs demo --pool-size 20 >"$work/demo.log" 2>&1 &
demo=$!
for _ in $(seq 1 120); do
  grep -q 'Press Ctrl-C' "$work/demo.log" && break
  kill -0 "$demo" 2>/dev/null || { cat "$work/demo.log" >&2; die "the demo exited"; }
  sleep 0.5
done
grep -q 'Press Ctrl-C' "$work/demo.log" || { cat "$work/demo.log" >&2; die "the demo did not start"; }
# "PGPASSWORD=<pw> pgbench -i -h 127.0.0.1 -p <pg port> ..." and "... -p <pooler port> -U demo demo"
direct=$(grep -m1 'pgbench -i' "$work/demo.log")
pooled=$(grep -m1 'pgbench -c' "$work/demo.log")
export PGPASSWORD
PGPASSWORD=$(sed -E 's/.*PGPASSWORD=([^ ]+).*/\1/' <<<"$direct")
pg_port=$(sed -E 's/.* -p ([0-9]+) .*/\1/' <<<"$direct")
port=$(sed -E 's/.* -p ([0-9]+) .*/\1/' <<<"$pooled")
pgbench -i -q -s 1 -h 127.0.0.1 -p "$pg_port" -U demo demo >&2
for protocol in simple extended; do
  for clients in 10 100; do
    pgbench -n -S -M "$protocol" -c "$clients" -j 2 -T "$secs" -h 127.0.0.1 -p "$port" -U demo demo \
      | grep -E '^(tps|number of failed)' >&2
  done
  pgbench -n -M "$protocol" -c 10 -j 2 -T "$secs" -h 127.0.0.1 -p "$port" -U demo demo \
    | grep -E '^(tps|number of failed)' >&2
done
kill -INT "$demo"
wait "$demo" || true
demo=""
ls "$work"/profiles/*.profraw >/dev/null 2>&1 || die "the training wrote no profile"
"$profdata" merge -o "$work/pgpool-rs.profdata" "$work"/profiles/*.profraw

log "3/3 optimised build"
RUSTFLAGS="-Cprofile-use=$work/pgpool-rs.profdata" \
  cargo build --release --locked --bin pgpool-rs --target-dir target/pgo-use >&2
install -D -m 0755 target/pgo-use/release/pgpool-rs "$out"
log "built $out"
