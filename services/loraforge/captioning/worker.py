"""The captioning job: a committed dataset in, reviewed-ready captions beside it out.

    datasets/<t>/<p>/datasets/<id>/dataset.json + manifest.json   (read by dataset.read_dataset)
 -> datasets/<t>/<p>/datasets/<id>/captions/<clip_id>.json         (review.CaptionReviewStore)
    and the event `dataset.captioned`.

Idempotent: a redelivered job regenerates the same text and CaptionReviewStore skips identical
and human-locked captions, so nothing is written twice and no edit is lost.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from pydantic import ValidationError

from loraforge.captioning.captioner import CaptionOptions, caption_clips
from loraforge.captioning.dataset import CuratedDataset, read_dataset
from loraforge.captioning.review import CaptionReviewStore
from loraforge.captioning.sources import AttributeSource, CaptionSource, ClipInput
from loraforge.captioning.sources.openai_chat import OpenAIChatSource
from loraforge.captioning.sources.vlm import VlmSource
from loraforge.runtime.errors import InvalidInput, NotFound
from loraforge.runtime.events import Event
from loraforge.runtime.job_service import JobContext, JobOutcome
from loraforge.runtime.jobs import Job
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.params import CaptioningParams
from loraforge.runtime.settings import CaptioningSettings
from loraforge.runtime.storage import ObjectStore

CAPTIONED_EVENT = "dataset.captioned"
SourceFactory = Callable[[str], list[CaptionSource]]


def sources_factory(settings: CaptioningSettings) -> SourceFactory:
    """Attributes always first (measured facts win); a model adds what it sees."""

    def sources(name: str) -> list[CaptionSource]:
        if name == "attributes":
            return [AttributeSource()]
        if name == "vlm":
            if settings.vlm_dir is None:
                raise InvalidInput(
                    "source 'vlm' needs a provisioned model: set "
                    "LORAFORGE_CAPTIONING__VLM_DIR to its local directory"
                )
            return [AttributeSource(), VlmSource(str(settings.vlm_dir))]
        if name == "openai":
            if not settings.openai_url or not settings.openai_model:
                raise InvalidInput(
                    "source 'openai' needs LORAFORGE_CAPTIONING__OPENAI_URL and "
                    "LORAFORGE_CAPTIONING__OPENAI_MODEL"
                )
            return [
                AttributeSource(),
                OpenAIChatSource(
                    settings.openai_url,
                    settings.openai_model,
                    api_key=settings.openai_api_key.get_secret_value(),
                ),
            ]
        raise InvalidInput(f"unknown caption source {name!r}; use attributes, vlm or openai")

    return sources


class CaptioningWorker:
    """`work(job, ctx)` for `JobWorker("captioning", ...)`."""

    def __init__(
        self, store: ObjectStore, *, sources: SourceFactory | None = None, poll_s: float = 1.0
    ):
        self._store = store
        self._sources = sources or sources_factory(CaptioningSettings())
        self._poll_s = poll_s

    async def __call__(self, job: Job, ctx: JobContext) -> JobOutcome:
        try:
            params = CaptioningParams.model_validate(job.params)
        except ValidationError as exc:
            raise InvalidInput(f"invalid captioning parameters: {exc}") from None
        project = ProjectRef(job.tenant, job.project)
        sources = self._sources(params.source)
        await ctx.progress(0.02, "reading the dataset")
        try:
            dataset = await asyncio.to_thread(read_dataset, self._store, project, params.dataset_id)
        except NotFound as exc:  # retrying will not make it appear: fail the job now, saying why
            raise InvalidInput(str(exc)) from None
        review = CaptionReviewStore(self._store, project, dataset.id)
        done = [0, max(1, len(dataset.clips))]

        def count(n: int, total: int) -> None:  # called from the captioning thread
            done[0], done[1] = n, total

        with tempfile.TemporaryDirectory(prefix=f"captioning-{job.id}-") as tmp:
            clips = await asyncio.to_thread(
                self._download, dataset, Path(tmp), params.source != "attributes"
            )
            options = CaptionOptions(
                params.trigger,
                lora_type=params.lora_type.value,
                class_noun=params.class_noun,
                base_preset=params.base_preset,
                motion=params.motion,
            )
            task = asyncio.ensure_future(
                asyncio.to_thread(caption_clips, clips, sources, options, count)
            )
            # progress (and cancellation, which ctx.progress raises) from this loop only: one
            # writer of the job record at a time
            while not task.done():
                await asyncio.wait({task}, timeout=self._poll_s)
                if not task.done():
                    await ctx.progress(
                        0.1 + 0.8 * done[0] / done[1], f"captioned {done[0]}/{done[1]} clips"
                    )
            run = task.result()
        await ctx.progress(0.92, "storing captions")
        written = 0
        for c in run.captions:
            _rec, wrote = await asyncio.to_thread(
                review.save_generated,
                c.clip_id,
                c.text,
                author=f"machine:{'+'.join(c.sources)}",
                slots=c.slots,
                warnings=c.warnings,
            )
            written += wrote
        await asyncio.to_thread(
            review.save_run,
            {
                "trigger": run.trigger,
                "lora_type": run.lora_type,
                "template": run.template,
                "shared": run.shared,
                "tokenizer": run.tokenizer,
                "source": params.source,
                "job_id": job.id,
                "class_noun": params.class_noun,
                "base_preset": params.base_preset,
            },
        )
        data = {
            "job_id": job.id,
            "dataset_id": dataset.id,
            "captions": len(run.captions),
            "written": written,
            "kept": len(run.captions) - written,
            "trigger": run.trigger,
            "lora_type": run.lora_type,
            "prefix": review.prefix,
            "warnings": run.warnings[:50],
        }
        return JobOutcome(
            message=f"dataset {dataset.id}: {len(run.captions)} captions ({written} new, "
            f"{len(run.captions) - written} kept)",
            result=data,
            events=[
                Event(
                    id=f"captioning-captioned-{job.id}",
                    type=CAPTIONED_EVENT,
                    tenant=job.tenant,
                    project=job.project,
                    data=data,
                )
            ],
        )

    def _download(self, dataset: CuratedDataset, work: Path, media: bool) -> list[ClipInput]:
        out = []
        for c in dataset.clips:
            keyframes = [
                self._store.download(c.bucket, k, work / c.clip_id / PurePosixPath(k).name)
                for k in c.keyframe_keys[:3]
            ]
            path = None
            if media:  # only models look at the clip itself
                path = self._store.download(
                    c.bucket, c.key, work / c.clip_id / PurePosixPath(c.key).name
                )
            out.append(ClipInput(c.clip_id, path, keyframes, c.metrics))
        return out
