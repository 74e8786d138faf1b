# portcullis container image.
#
#   docker build -t ghcr.io/portcullis/portcullis:0.1.0 .
#   docker run --rm -p 8443:8443 -v "$PWD/my-config:/etc/portcullis:ro" \
#       ghcr.io/portcullis/portcullis:0.1.0
#
# Two stages: a Rust toolchain builds the release binary, and a distroless
# image runs it. The binary links glibc dynamically (aws-lc-rs, the TLS and
# signing crypto, is C and wants a libc), so the runtime is distroless "cc":
# glibc, libgcc_s, CA certificates and nothing else. No shell, no package
# manager, non-root by default.

# ---- build ------------------------------------------------------------------
# Debian bookworm, like the runtime, so the binary needs no newer glibc than
# the one it will run on. The native target is built: on amd64 that is
# x86_64-unknown-linux-gnu (on an arm64 builder, aarch64-unknown-linux-gnu,
# and distroless cc exists for both).
FROM rust:1-bookworm AS builder
WORKDIR /src

# Dependencies first, in a layer of their own, rebuilt only when Cargo.toml
# or Cargo.lock change: their sources are fetched here. They are compiled in
# the next step, because a PGO build compiles them twice with flags that
# depend on the training profile. aws-lc-sys needs only the C compiler the
# image already has (no cmake on x86_64/aarch64 Linux). Cargo.toml names
# the two files under benches/, and cargo refuses a manifest whose named
# targets are missing, so they come too (they are not built).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo fetch --locked \
    && rm -rf src

# The binary is built with profile-guided optimisation (scripts/build-pgo:
# an instrumented build, a training run of `portcullis demo` driven by curl
# on the builder's loopback, and the optimised build; ~20 minutes on 2
# cores). In two full bench/run runs it served 1.36x and 1.06x the
# authenticated requests of the plain build (1.40x and 1.15x per round).
# `--build-arg PGO=0` builds with plain `cargo build --release` instead.
# The binary is stripped of its symbol table (the PGO build: 11.1 MB ->
# 9.6 MB); a panic's backtrace then has no function names.
ARG PGO=1
COPY src ./src
COPY scripts/build-pgo scripts/pgo-train ./scripts/
RUN if [ "$PGO" = 1 ]; then \
        cp "$(scripts/build-pgo)" /usr/local/bin/portcullis; \
    else \
        cargo build --release --locked && cp target/release/portcullis /usr/local/bin/portcullis; \
    fi \
    && strip /usr/local/bin/portcullis \
    && /usr/local/bin/portcullis --version

# ---- run --------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=builder /usr/local/bin/portcullis /usr/local/bin/portcullis

# The configuration (config.yaml) and whatever it names: secrets, signing
# key, TLS certificate. Mounted read-only; portcullis never writes there.
VOLUME /etc/portcullis

# 8443: the HTTPS listener of the example configurations.
# 9901: the admin listener (/metrics, /healthz, /readyz). Keep it off the
#       public network: publish 8443 only.
EXPOSE 8443 9901

# distroless' "nonroot" user, by number: Kubernetes' runAsNonRoot can only
# verify a numeric user (a name makes the pod fail to start with "image has
# non-numeric user").
USER 65532:65532

# The image has no shell or curl: portcullis probes its own admin endpoint
# (exec form). Kubernetes uses its own httpGet probes instead (deploy/kubernetes/).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["portcullis", "healthcheck", "--url", "http://127.0.0.1:9901/healthz"]

ENTRYPOINT ["portcullis"]
CMD ["run", "--config", "/etc/portcullis/config.yaml"]
