# syntax=docker/dockerfile:1
# pgpool-rs container image.
#
#   docker build -t pgpool-rs .
#   docker run -v "$PWD/config:/etc/pgpool-rs:ro" -p 6432:6432 -p 9930:9930 pgpool-rs
#
# The mounted directory must hold pool.toml (with http_addr = "0.0.0.0:9930" so probes
# from outside the container reach it) and the userlist it names.

# ---- build: the official Rust image on Debian 12, the same glibc (2.36) as the runtime.
# Pinned to the toolchain the project is tested with. (Cargo.lock needs Rust >= 1.88.)
FROM rust:1.95.0-bookworm AS build
# A profile-guided build (scripts/pgo-build.sh): the binary is trained under pgbench
# against a throwaway PostgreSQL (`pgpool-rs demo`), so the build stage needs the
# PostgreSQL 15 server (with pgbench), and rustup's llvm-tools (llvm-profdata).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup component add llvm-tools
WORKDIR /src
COPY . .
# Cache mounts keep the crate downloads and compiled dependencies between builds;
# the binary is written outside the cached target directory so the next stage sees it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/pgo-build.sh /out/pgpool-rs

# ---- runtime
# glibc + libgcc_s (all the binary links), CA certificates and tzdata; no shell, no
# package manager. The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
# The one file the image adds: the pooler binary.
COPY --from=build /out/pgpool-rs /usr/local/bin/pgpool-rs
# Where pgpool-rs (and `pgpool-rs health`) read the config; mount pool.toml and the
# userlist there (a Kubernetes ConfigMap/Secret, or a bind mount).
ENV PGPOOL_CONFIG=/etc/pgpool-rs/pool.toml
# One JSON object per log line on stderr, for log collectors.
ENV PGPOOL_LOG_FORMAT=json
# Numeric non-root user, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# 6432: PostgreSQL clients; 9930: /metrics, /health/live, /health/ready.
EXPOSE 6432 9930
# SIGTERM starts the graceful drain (a second SIGTERM closes at once).
STOPSIGNAL SIGTERM
# `pgpool-rs health` GETs /health/ready on the config's http_addr: exit 0 on 200.
# (Docker and Compose use this; Kubernetes ignores it and uses the probes in config/k8s.)
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/pgpool-rs", "health"]
# Exec form: pgpool-rs is PID 1 and receives SIGTERM/SIGHUP itself. Extra arguments
# (`--check`, `health --url ...`) are appended by `docker run IMAGE ...`.
ENTRYPOINT ["/usr/local/bin/pgpool-rs"]
