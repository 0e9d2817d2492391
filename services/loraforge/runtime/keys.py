"""Names that end up in object keys, subjects and KV keys: validated once, here.

Every object key starts with `<tenant>/<project>/`, so one tenant's prefix never overlaps
another's and a listing by prefix can only ever see its own tenant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loraforge.runtime.errors import InvalidInput

# Lowercase slugs: safe in S3 keys, NATS subjects, KV keys, k8s labels and file names.
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_KEY_PART = re.compile(r"^[A-Za-z0-9._=-]+$")


def validate_slug(value: str, what: str) -> str:
    if not _SLUG.match(value or ""):
        raise InvalidInput(
            f"{what} {value!r} is not a valid name: use 1-63 lowercase letters, digits and "
            "inner hyphens (e.g. 'jane-doe-v2')"
        )
    return value


def validate_key_part(part: str) -> str:
    """One path segment of an object key: no separators, no `..`, no hidden tricks."""
    if not part or part in {".", ".."} or not _KEY_PART.match(part):
        raise InvalidInput(
            f"{part!r} cannot be part of a storage key: use letters, digits, '.', '_', '-', '='"
        )
    return part


@dataclass(frozen=True)
class ProjectRef:
    tenant: str
    project: str

    def __post_init__(self) -> None:
        validate_slug(self.tenant, "tenant")
        validate_slug(self.project, "project")

    @property
    def prefix(self) -> str:
        return f"{self.tenant}/{self.project}/"

    def key(self, *parts: str) -> str:
        """`tenant/project/part/part...`; each part validated, `a/b` split into segments."""
        segments: list[str] = []
        for part in parts:
            segments.extend(validate_key_part(s) for s in part.split("/"))
        if not segments:
            raise InvalidInput("an object key needs at least one part after the project")
        return self.prefix + "/".join(segments)
