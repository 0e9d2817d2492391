"""Errors the evaluation domain raises; messages say what the caller should fix."""

from __future__ import annotations

from loraforge.runtime.errors import InvalidInput, LoraforgeError


class InvalidRenders(InvalidInput):
    """Renders or references that cannot be scored (empty list, undecodable image)."""


class TrialFailed(LoraforgeError):
    """A sweep trial that could not finish (out of memory, diverged): the sweep records it as
    failed and goes on with the next trial instead of stopping."""
