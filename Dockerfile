# syntax=docker/dockerfile:1
#
# Engram server image.
#
#   docker build -t engram .
#   docker run --rm -p 8080:8080 -v engram-data:/data -e ENGRAM_INSECURE=1 engram
#
# The image listens on 0.0.0.0:8080. Without auth the server refuses to listen on a
# non-loopback address unless the operator sets ENGRAM_INSECURE=1 at run time. The image
# deliberately does not set it: until auth is configured, run with
# `docker run -e ENGRAM_INSECURE=1 ...` and keep the port on a trusted network.

# ---- build ---------------------------------------------------------------------------------
# The Go toolchain must be at least the `go` line of go.mod (the official image sets
# GOTOOLCHAIN=local, so an older 1.26.x refuses to build instead of downloading).
# --platform=$BUILDPLATFORM: compile natively and cross-compile for the target (buildx).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src

# Dependencies first, so that source changes do not re-download modules.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
# CGO_ENABLED=0: a static binary for the distroless static image. Pebble falls back to pure-Go
# zstd without cgo; the search index must use a pure-Go SQLite driver (not mattn/go-sqlite3).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/engram-server ./cmd/server && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/engram ./cmd/engram && \
    mkdir -p /out/data

# ---- run -----------------------------------------------------------------------------------
# distroless/static nonroot: no shell, no package manager, only CA certificates, tzdata (cron
# time zones) and /etc/passwd; it runs as uid/gid 65532 ("nonroot"). Smaller attack surface
# than alpine, and the static Go binaries need nothing else. Debug with the CLI binary in the
# image (`docker exec <c> /engram ...`) or the :debug-nonroot variant, which adds busybox.
FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /out/engram-server /engram-server
COPY --from=build /out/engram /engram
# /data exists in the image owned by nonroot, so a new named volume mounted there inherits
# that ownership and is writable. A bind-mounted host directory must be writable by uid 65532
# (e.g. `chown 65532:65532 ./data`).
COPY --from=build --chown=65532:65532 /out/data /data

USER 65532:65532
ENV ENGRAM_ADDR=0.0.0.0:8080 \
    ENGRAM_DATA=/data
VOLUME /data
EXPOSE 8080

# `engram health` exits 0 when /readyz answers 200 (storage open, accepting writes).
# If you change the port in ENGRAM_ADDR, override the health check to match.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["/engram", "health", "--server", "http://127.0.0.1:8080"]

# Exec form: the server is PID 1 and receives SIGTERM from `docker stop` directly for a
# graceful shutdown (raise `docker stop -t` if draining takes longer than the default 10 s).
ENTRYPOINT ["/engram-server"]
