package sidecar

// RLSServerOptions lets the benchmark's do-nothing gRPC server run with the
// sidecar's own options.
var RLSServerOptions = rlsServerOptions
