# syntax=docker/dockerfile:1
#
# The confcom image. Every component is a subcommand of one static-ish binary, `confcom`
# (`confcom device-plugin`, `confcom quote-helper`, `confcom webhook`, `confcom attest serve`,
# `confcom pccs serve`, ...). The device plugin also has a binary of its own,
# `confcom-device-plugin` (the same flags, without the subcommand word), and its DaemonSet
# runs that one: the plugin stays resident on every SGX node, and its own binary maps only
# the plugin's code, so it idles in less memory. `confcom` is built with the `dist` profile
# (fat LTO, one codegen unit), the plugin with `dist-small` (the same, optimised for size):
# see the root Cargo.toml.
#
#   docker build -t confcom:0.1.0 .                      # default: distroless, nonroot
#   docker build -t confcom:0.1.0-dcap --target dcap .   # + Intel DCAP quoting libraries
#
# The default image is what every component runs, except the quote helper with the `dcap`
# backend, which loads Intel's DCAP quote library at run time and so needs the `dcap`
# variant. The Helm chart picks the `-dcap` tag for it by default.

ARG RUST_VERSION=1.95

# ---- build ---------------------------------------------------------------------------
# Bookworm, to match the glibc of the distroless runtime below.
FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p confcom \
 && cargo build --profile dist-small --locked -p device-plugin --bin confcom-device-plugin \
 && install -D -m 0755 target/dist/confcom /out/confcom \
 && install -D -m 0755 target/dist-small/confcom-device-plugin /out/confcom-device-plugin

# ---- dcap: Intel's DCAP runtime libraries for `confcom quote-helper --backend dcap` ----
FROM ubuntu:24.04 AS dcap
ARG INTEL_SGX_REPO=https://download.01.org/intel-sgx/sgx_repo/ubuntu
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && install -d -m 0755 /etc/apt/keyrings \
 && curl -fsSL "$INTEL_SGX_REPO/intel-sgx-deb.key" | gpg --dearmor -o /etc/apt/keyrings/intel-sgx.gpg \
 && echo "deb [arch=amd64 signed-by=/etc/apt/keyrings/intel-sgx.gpg] $INTEL_SGX_REPO noble main" \
      >/etc/apt/sources.list.d/intel-sgx.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      libsgx-dcap-ql libsgx-dcap-default-qpl libsgx-qe3-logic libsgx-pce-logic \
      libsgx-enclave-common libsgx-urts \
 && apt-get purge -y curl gnupg && apt-get autoremove -y \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/confcom /out/confcom-device-plugin /usr/local/bin/
# Never set SGX_AESM_ADDR here (not even empty: Intel's library only checks that it is
# set): the quote helper would then send its own requests to its own socket.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/confcom"]

# ---- default: distroless, nonroot (last stage, so a plain `docker build` builds it) ----
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/confcom /out/confcom-device-plugin /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/confcom"]
