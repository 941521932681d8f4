"""gRPC services (floor 5): thin servicers (wire message → domain call → wire message) and the
one place that maps domain errors to status codes."""
