"""The error hierarchy shared by every service.

Domain code raises these; the gRPC interceptor (runtime.grpc_server) and the gateway map them
to wire status codes in one place each. Every message should tell the caller what to fix.
"""

from __future__ import annotations


class LoraforgeError(Exception):
    """Base of every error loraforge raises on purpose."""


class InvalidInput(LoraforgeError):
    """The caller sent something we cannot use (bad file, bad name, bad parameter)."""


class NotFound(LoraforgeError):
    """The thing asked for does not exist (or belongs to another tenant)."""


class AlreadyExists(LoraforgeError):
    """A create would overwrite something that must stay."""


class Conflict(LoraforgeError):
    """A concurrent writer changed the thing first; re-read and retry."""


class InvalidTransition(LoraforgeError):
    """A job state change that the lifecycle does not allow."""


class Unavailable(LoraforgeError):
    """A dependency (NATS, S3, a service) cannot be reached."""


class Cancelled(LoraforgeError):
    """Work stopped because its job was cancelled."""


class ConfigurationError(LoraforgeError):
    """Settings that cannot work (placeholder secret in production, unknown option)."""
