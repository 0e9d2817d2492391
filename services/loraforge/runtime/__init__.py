"""Shared runtime every service is built from: settings, object store, event bus, job store,
gRPC bootstrap, logging and metrics. Nothing in here knows about a particular service."""
