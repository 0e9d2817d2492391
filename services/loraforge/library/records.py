"""The library's records (pydantic, stored as JSON in the object store)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from loraforge.runtime.errors import InvalidInput

#: `name`, `name:3`, `name:prod` (no tag means the alias `latest`)
_SPEC = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]{0,62}):?(?P<tag>[a-z0-9][a-z0-9-]{0,62})?$")
LATEST = "latest"


def now() -> datetime:
    return datetime.now(UTC)


def parse_spec(spec: str) -> tuple[str, int | None, str | None]:
    """`name[:version|alias]` -> (name, version or None, alias or None); no tag = `latest`."""
    m = _SPEC.match((spec or "").strip())
    if not m or (":" in spec and not m.group("tag")):
        raise InvalidInput(
            f"{spec!r} is not a LoRA reference: write NAME, NAME:VERSION (a "
            "number) or NAME:ALIAS (e.g. 'money-rain:3', 'money-rain:prod')"
        )
    tag = m.group("tag")
    if tag is None:
        return m.group("name"), None, LATEST
    if tag.isdigit():
        return m.group("name"), int(tag), None
    return m.group("name"), None, tag


def parse_checkpoint(value: str | int | None) -> int | Literal["best", "last"] | None:
    """`None`/`best`/`last`/`step-N`/`N` -> what to promote."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        step = value
    else:
        v = value.strip().lower()
        if v == "best":
            return "best"
        if v == "last":
            return "last"
        v = v.removeprefix("step-").removeprefix("step")
        if not v.isdigit():
            raise InvalidInput(
                f"checkpoint {value!r}: write best, last, step-N or N (a step "
                "number the run checkpointed; list them with the run's "
                "checkpoints)"
            )
        step = int(v)
    if step < 1:
        raise InvalidInput(f"checkpoint step {step}: steps count from 1")
    return step


class LoraFile(BaseModel):
    """One file of a version: `role` main, or the expert it is for (Wan 2.2 A14B: the main
    file is the high-noise expert, `low_noise` the other)."""

    role: str = "main"
    key: str  # loras bucket, content-addressed under library/_blobs/
    sha256: str
    size: int
    source_key: str = ""  # where it was copied from (the run's file)


class LoraVersion(BaseModel):
    name: str
    version: int
    tenant: str
    project: str
    run_id: str
    checkpoint: str  # "step-N"
    step: int
    chosen: Literal["automatic", "user"]
    reason: str
    files: list[LoraFile]
    base_preset: str
    family: str
    lora_type: str = ""
    trigger: str = ""
    recommended_strength: float | None = None
    strength_reason: str = ""
    dataset_id: str = ""
    dataset_hash: str = ""
    training: dict[str, Any] = Field(default_factory=dict)
    scores: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=now)
    created_by: str = ""
    nonce: str = ""  # tells this writer's record apart from a concurrent one

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def lora_key(self) -> str:
        """The main file (what a render's `lora_key` names)."""
        return next(f.key for f in self.files if f.role == "main")

    def public(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"nonce"})
        out["ref"] = self.ref
        out["lora_key"] = self.lora_key
        return out


class AliasMove(BaseModel):
    version: int
    moved_at: datetime = Field(default_factory=now)
    by: str = ""


class Alias(BaseModel):
    name: str
    alias: str
    version: int
    moved_at: datetime = Field(default_factory=now)
    by: str = ""
    history: list[AliasMove] = Field(default_factory=list)  # earlier targets, newest last


class CheckpointInfo(BaseModel):
    """One checkpoint of a finished run, as the library can promote it."""

    step: int
    name: str  # "step-N"
    automatic_pick: bool = False
    last: bool = False
    promotable: bool = True
    why_not: str = ""
    val_loss: float | None = None
    likeness: float | None = None
    previews: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)  # role -> run key
