"""Plumbing written once for all four services: settings, clock, database, errors, gRPC server
bootstrap and clients, outbox relay, Redis idempotency, pagination, logging."""
