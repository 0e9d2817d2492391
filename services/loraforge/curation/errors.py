"""Errors the curation domain raises; messages say what the caller should fix."""

from __future__ import annotations

from loraforge.runtime.errors import ConfigurationError, InvalidInput


class UnreadableMedia(InvalidInput):
    """A clip or photo that cannot be decoded (missing, empty, wrong format)."""


class UnsupportedMedia(InvalidInput):
    """A file whose kind curation does not handle (neither a video clip nor a photo)."""


class InvalidReference(InvalidInput):
    """A reference photo in which no single usable face can be found."""


class BackendUnavailable(ConfigurationError):
    """A face backend was chosen whose models or packages are not provisioned."""


class InvalidPolicy(InvalidInput):
    """A curation policy override with unknown fields or impossible values."""
