"""Foundations every layer may use: errors and their status codes, request limits, deadlines,
progress and logging, hits, TLS, fault injection for tests, retrieval metrics. Imports nothing
above itself and no TensorFlow."""
