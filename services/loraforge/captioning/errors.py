"""Captioning's errors: all InvalidInput, so the job fails (no redelivery) with the message
that says what to fix, and the gRPC layer maps them to INVALID_ARGUMENT."""

from __future__ import annotations

from loraforge.runtime.errors import InvalidInput


class InvalidTrigger(InvalidInput):
    """The trigger word is not a rare token (or not a usable token at all)."""


class InvalidTemplate(InvalidInput):
    """A caption template that cannot be rendered (unknown slot, no trigger, bad syntax)."""


class InvalidCaption(InvalidInput):
    """A caption a user wrote or edited that we refuse (empty, too long, hedging...)."""


class ExportRefused(InvalidInput):
    """A dataset that breaks a rule of the export target; the message names the rule."""

    def __init__(self, rule: str, detail: str):
        self.rule = rule
        super().__init__(f"[{rule}] {detail}")
