"""Prometheus metrics, one registry per process (no global default registry: tests run
several services in one process)."""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    def __init__(self, service: str):
        self.service = service
        self.registry = CollectorRegistry()
        self.rpc_seconds = Histogram(
            "loraforge_rpc_seconds",
            "gRPC call duration",
            ["service", "method", "code"],
            registry=self.registry,
        )
        self.events = Counter(
            "loraforge_events_total",
            "Pipeline events handled",
            ["service", "type", "outcome"],
            registry=self.registry,
        )
        self.jobs = Gauge(
            "loraforge_jobs_running",
            "Jobs this process is running",
            ["service"],
            registry=self.registry,
        )
        self._server: WSGIServer | None = None

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpc_seconds.labels(self.service, method, code).observe(seconds)

    def count_event(self, event_type: str, outcome: str) -> None:
        self.events.labels(self.service, event_type, outcome).inc()

    def serve(self, host: str, port: int) -> int | None:
        """Start the /metrics endpoint; port 0 disables it. Returns the bound port."""
        if not port:
            return None
        self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
