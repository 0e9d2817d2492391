"""gRPC server bootstrap shared by every backend service.

One server per process with: standard health checking (per service and overall ""), server
reflection, a cap on every call's duration, domain errors mapped to status codes in one
place, and Prometheus metrics per method. Shutdown is one path: health NOT_SERVING ->
stop accepting and let in-flight calls finish within the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from loraforge.runtime import errors
from loraforge.runtime.metrics import Metrics
from loraforge.runtime.settings import ServerSettings

log = logging.getLogger(__name__)

# The only mapping from domain errors to gRPC status codes.
STATUS_BY_ERROR: tuple[tuple[type[errors.LoraforgeError], grpc.StatusCode], ...] = (
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.Conflict, grpc.StatusCode.ABORTED),
    (errors.InvalidTransition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.Cancelled, grpc.StatusCode.CANCELLED),
    (errors.ConfigurationError, grpc.StatusCode.FAILED_PRECONDITION),
)


def status_for(exc: BaseException) -> grpc.StatusCode:
    for cls, code in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


class _BoundaryInterceptor(grpc.aio.ServerInterceptor):
    """Deadline cap, error mapping and metrics around every unary call."""

    def __init__(self, default_timeout_s: float, metrics: Metrics | None):
        self._timeout = default_timeout_s
        self._metrics = metrics

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = details.method
        timeout, metrics = self._timeout, self._metrics

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            remaining = context.time_remaining()
            budget = timeout if remaining is None else min(timeout, remaining)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                # A deadline on the running task, not wait_for's extra task per call (on 3.11
                # that task was a tenth of a cheap call's CPU, e.g. GetJob).
                async with asyncio.timeout(budget):
                    return await inner(request, context)
            except TimeoutError:
                code = grpc.StatusCode.DEADLINE_EXCEEDED
                await context.abort(code, f"{method} took longer than {budget:.1f}s")
            except errors.LoraforgeError as exc:
                code = status_for(exc)
                await context.abort(code, str(exc))
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("unhandled error in %s", method)
                await context.abort(code, f"internal error in {method}; see the service log")
            finally:
                if metrics is not None:
                    metrics.observe_rpc(method, code.name, time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            call,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class GrpcServer:
    def __init__(self, settings: ServerSettings, *, metrics: Metrics | None = None):
        self._settings = settings
        self._server = grpc.aio.server(
            interceptors=[_BoundaryInterceptor(settings.default_rpc_timeout_s, metrics)],
            options=[("grpc.so_reuseport", 0)],
        )
        self._health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._service_names: list[str] = []
        self.port: int = 0

    @property
    def server(self) -> grpc.aio.Server:
        """For `add_XServicer_to_server` calls in composition roots."""
        return self._server

    def add(self, servicer: Any) -> None:
        """Mount a servicer; it knows its generated `add_*_to_server` and its full name."""
        self._service_names.append(servicer.attach(self._server))

    async def start(self) -> int:
        names = [
            *self._service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, self._server)
        address = f"{self._settings.host}:{self._settings.grpc_port}"
        self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise errors.Unavailable(f"cannot bind gRPC to {address}; is the port taken?")
        await self._server.start()
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "gRPC serving on %s:%d (%s)",
            self._settings.host,
            self.port,
            ", ".join(self._service_names),
        )
        return self.port

    async def set_not_serving(self) -> None:
        for name in ["", *self._service_names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def stop(self, grace_s: float | None = None) -> None:
        await self.set_not_serving()
        await self._server.stop(self._settings.shutdown_grace_s if grace_s is None else grace_s)

    async def wait(self) -> None:
        await self._server.wait_for_termination()
