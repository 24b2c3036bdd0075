"""The gRPC layer: server assembly, interceptors (auth, deadlines, metrics, access log), the
servicer and the conversion between protos and the serving layer's types."""
