"""The collector: the HTTP API that nodes ship records, labels and heartbeats to."""
