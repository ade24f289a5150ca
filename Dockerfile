# One image for the operator and the sidecar: two static binaries on distroless,
# running as a non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/
ARG VERSION=dev
ARG COMMIT=
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /quota-operator ./cmd/quota-operator
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /quota-sidecar ./cmd/quota-sidecar

FROM gcr.io/distroless/static:nonroot
COPY --from=build /quota-operator /quota-operator
COPY --from=build /quota-sidecar /quota-sidecar
USER 65532:65532
ENTRYPOINT ["/quota-operator"]
