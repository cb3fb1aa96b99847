# syntax=docker/dockerfile:1
#
# The confcom image: one static-ish binary, every component is a subcommand
# (`confcom device-plugin`, `confcom quote-helper`, `confcom webhook`, `confcom attest serve`,
# `confcom pccs serve`, ...).
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
    cargo build --release --locked -p confcom \
 && install -D -m 0755 target/release/confcom /out/confcom

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
COPY --from=build /out/confcom /usr/local/bin/confcom
# Never set SGX_AESM_ADDR here (not even empty: Intel's library only checks that it is
# set): the quote helper would then send its own requests to its own socket.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/confcom"]

# ---- default: distroless, nonroot (last stage, so a plain `docker build` builds it) ----
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/confcom /usr/local/bin/confcom
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/confcom"]
