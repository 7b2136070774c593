# The companionsync worker as a container: a plain worker against the
# Temporal cluster named by TEMPORAL_ADDRESS (see docker-compose.yml).
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/worker ./worker \
 && CGO_ENABLED=0 go build -trimpath -o /out/starter ./starter \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/starter /usr/local/bin/
# A data directory the nonroot user owns; a named volume mounted here
# inherits its ownership.
COPY --from=build --chown=nonroot:nonroot /out/data /data
WORKDIR /data
ENV COMPANIONSYNC_DATA_DIR=/data
ENTRYPOINT ["/usr/local/bin/worker"]
