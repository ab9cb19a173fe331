"""OTLP receivers (gRPC, HTTP), the one decoder, the mapper to canonical rows, backpressure."""
