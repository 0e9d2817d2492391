"""Captions under review, one JSON object per clip beside the dataset:

    datasets/<tenant>/<project>/datasets/<dataset_id>/captions/<clip_id>.json
    datasets/<tenant>/<project>/datasets/<dataset_id>/captions/_run.json   (trigger, type,
                                                                           template, shared text)

Every change appends a version (nothing is ever lost). A re-run of captioning never replaces
a caption a person approved or edited: it only adds a machine version on top of machine
versions, and skips identical text (a redelivered job writes nothing twice). Each object is
written whole through ObjectStore's staging-then-commit, so a reader never sees half of one.
"""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from typing import Any, TypedDict

from pydantic import BaseModel, Field

from loraforge.captioning.captioner import validate_user_caption
from loraforge.captioning.errors import InvalidCaption
from loraforge.captioning.templates import CaptionTemplate
from loraforge.captioning.tokens import EstimateTokenizer, limit_for
from loraforge.runtime.errors import NotFound
from loraforge.runtime.keys import ProjectRef, validate_key_part
from loraforge.runtime.storage import Bucket, ObjectStore

RUN_RECORD = "_run.json"


class CaptionRunRecord(TypedDict, total=False):
    """`captions/_run.json`: how a dataset's captions were made (a captioning job, or the
    import of fine-tune zips); a person's edit is checked against the same rules."""

    trigger: str
    lora_type: str
    template: dict[str, Any]  # CaptionTemplate.from_dict's form
    shared: dict[str, str]  # effect text every caption carries (captioner.CaptionRun.shared)
    tokenizer: str
    source: str  # attributes | vlm | openai | fine-tune zip(s)
    job_id: str
    class_noun: str
    base_preset: str | None  # sets the caption length limit
    mode: str  # a fine-tune zip's mode (i2v, kf2v)
    merged: list[str]  # the datasets of fine-tune zips merged into this one


class CaptionVersion(BaseModel):
    text: str
    author: str  # "machine:<sources>" or "user:<name>"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    note: str = ""
    slots: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @property
    def by_human(self) -> bool:
        return self.author.startswith("user:")


class CaptionRecord(BaseModel):
    clip_id: str
    dataset_id: str
    approved: bool = False
    approved_by: str = ""
    versions: list[CaptionVersion] = Field(default_factory=list)

    @property
    def current(self) -> CaptionVersion:
        return self.versions[-1]

    @property
    def text(self) -> str:
        return self.current.text

    @property
    def locked(self) -> bool:
        """A re-run must leave it alone: approved, or last written by a person."""
        return self.approved or self.current.by_human


class CaptionReviewStore:
    def __init__(self, store: ObjectStore, project: ProjectRef, dataset_id: str):
        self._store = store
        self.project = project
        self.dataset_id = validate_key_part(dataset_id)
        self.prefix = project.key("datasets", dataset_id, "captions")

    def key(self, clip_id: str) -> str:
        return f"{self.prefix}/{validate_key_part(clip_id)}.json"

    def get(self, clip_id: str) -> CaptionRecord | None:
        if self._store.stat(Bucket.DATASETS, self.key(clip_id)) is None:
            return None
        return CaptionRecord.model_validate(
            self._store.get_json(Bucket.DATASETS, self.key(clip_id))
        )

    def require(self, clip_id: str) -> CaptionRecord:
        rec = self.get(clip_id)
        if rec is None:
            raise NotFound(
                f"dataset {self.dataset_id} has no caption for clip {clip_id!r}; "
                "run captioning first"
            )
        return rec

    def list(self) -> list[CaptionRecord]:
        out = []
        for obj in self._store.list(Bucket.DATASETS, self.prefix + "/"):
            name = obj.key.rsplit("/", 1)[-1]
            if name.endswith(".json") and name != RUN_RECORD:
                out.append(
                    CaptionRecord.model_validate(self._store.get_json(Bucket.DATASETS, obj.key))
                )
        return sorted(out, key=lambda r: r.clip_id)

    def texts(self) -> dict[str, str]:
        return {r.clip_id: r.text for r in self.list()}

    def _put(self, rec: CaptionRecord) -> CaptionRecord:
        self._store.put_json(Bucket.DATASETS, self.key(rec.clip_id), rec.model_dump(mode="json"))
        return rec

    def save_generated(
        self,
        clip_id: str,
        text: str,
        *,
        author: str = "machine",
        slots: dict[str, str] | None = None,
        # builtins.list: this class's own `list` method shadows it in annotations
        warnings: builtins.list[str] | None = None,
    ) -> tuple[CaptionRecord, bool]:
        """(record, written). Locked captions and unchanged text are kept as they are."""
        if not author.startswith("machine"):
            author = f"machine:{author}"
        rec = self.get(clip_id)
        if rec is not None and (rec.locked or rec.text == text):
            return rec, False
        rec = rec or CaptionRecord(clip_id=clip_id, dataset_id=self.dataset_id)
        rec.versions.append(
            CaptionVersion(text=text, author=author, slots=slots or {}, warnings=warnings or [])
        )
        return self._put(rec), True

    def edit(
        self, clip_id: str, text: str, *, user: str = "user", approve: bool = False, note: str = ""
    ) -> CaptionRecord:
        """A person's edit (validate it first with captioner.validate_user_caption)."""
        if not text or not text.strip():
            raise InvalidCaption(f"caption of {clip_id} is empty; write what the clip shows")
        rec = self.require(clip_id)
        rec.versions.append(CaptionVersion(text=text.strip(), author=f"user:{user}", note=note))
        if approve:
            rec.approved, rec.approved_by = True, user
        return self._put(rec)

    def checked_edit(
        self, clip_id: str, text: str, *, user: str = "user", approve: bool = False
    ) -> CaptionRecord:
        """A person's edit, refused (not rewritten) when it breaks the dataset's rules: the
        trigger, the template's fixed parts, the shared effect text, the token limit."""
        run = self.load_run()
        if run:
            template = (
                CaptionTemplate.from_dict(run["lora_type"], run["template"])
                if run.get("template")
                else None
            )
            limit = limit_for(run.get("base_preset"))[1]
            text = validate_user_caption(
                text,
                trigger=run["trigger"],
                tokenizer=EstimateTokenizer(max_tokens=limit),
                template=template,
                shared=run.get("shared") or {},
            )
        return self.edit(clip_id, text, user=user, approve=approve)

    def approve(self, clip_id: str, *, user: str = "user", approved: bool = True) -> CaptionRecord:
        rec = self.require(clip_id)
        rec.approved, rec.approved_by = approved, (user if approved else "")
        return self._put(rec)

    def revert(self, clip_id: str, version: int, *, user: str = "user") -> CaptionRecord:
        """Bring back an older text as a new version (history stays linear)."""
        rec = self.require(clip_id)
        if not 0 <= version < len(rec.versions):
            raise InvalidCaption(
                f"{clip_id} has versions 0..{len(rec.versions) - 1}, not {version}"
            )
        return self.edit(
            clip_id, rec.versions[version].text, user=user, note=f"revert to v{version}"
        )

    def save_run(self, run: CaptionRunRecord) -> None:
        self._store.put_json(Bucket.DATASETS, f"{self.prefix}/{RUN_RECORD}", run)

    def load_run(self) -> CaptionRunRecord | None:
        key = f"{self.prefix}/{RUN_RECORD}"
        if self._store.stat(Bucket.DATASETS, key) is None:
            return None
        run: CaptionRunRecord = self._store.get_json(Bucket.DATASETS, key)
        return run
