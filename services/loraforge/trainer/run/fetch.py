"""The captioned dataset of a training job, downloaded into a local folder in the trainer
core's seed layout: clips from ``clips/`` (or a builder's items from ``datasets/``) with the
current caption texts from the review store.

    <dest>/videos/<clip_id>.mp4 + <dest>/captions/<clip_id>.txt    a video model's clips
    <dest>/images/<clip_id>.<ext> + <dest>/images/<clip_id>.txt    images, and an image
                                                                   model's stills of clips
    <dest>/../validation/...                                       the clips named in
                                                                   ``extra.validation_clips``

A clip without a caption text is skipped (and listed); one that is an image is trained as an
image; an image model learns a video clip from a still (its first image keyframe, else its
middle frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loraforge.captioning.dataset import DatasetClip, read_dataset
from loraforge.captioning.review import CaptionReviewStore
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.keys import ProjectRef, validate_key_part
from loraforge.runtime.params import TrainingParams
from loraforge.runtime.storage import ObjectStore
from loraforge.trainer.checkpoints import EvalSettings, ReferenceCandidate, reference_candidates
from loraforge.trainer.presets import get_preset
from loraforge.trainer.run.options import VALIDATION_CLIPS, validation_clip_ids

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# keyframes the likeness evaluation may take its reference faces from (most frontal first):
# the evaluation settings' default (a job's own eval_reference_candidates is read after the
# fetch and only limits the training stills used when there are no keyframes)
REFERENCE_KEYFRAMES = EvalSettings.reference_candidates


@dataclass(frozen=True)
class FetchedDataset:
    """A dataset laid out for training, and what the run record and the evaluation need of it."""

    path: Path  # the training clips (seed layout)
    dataset_id: str
    samples: int  # training clips (the validation clips not counted)
    skipped: tuple[str, ...]  # clip ids without a caption text
    validation_path: Path | None  # the clips of extra.validation_clips, when named
    trigger: str  # the captioning run's trigger word ("" when none)
    lora_type: str
    captions: tuple[str, ...]  # every non-empty caption text (validation prompts)
    reference_keyframes: tuple[ReferenceCandidate, ...]


def fetch_dataset(
    store: ObjectStore, ref: ProjectRef, params: TrainingParams, dest: Path
) -> FetchedDataset:
    """Download ``params.dataset_id`` into ``dest`` (validation clips beside it)."""
    dataset = read_dataset(store, ref, params.dataset_id)
    review = CaptionReviewStore(store, ref, params.dataset_id)
    texts = review.texts()
    run = review.load_run() or {}
    held = set(validation_clip_ids(params.extra))
    unknown = sorted(held - {c.clip_id for c in dataset.clips})
    if unknown:
        raise InvalidInput(
            f"{VALIDATION_CLIPS} names clip(s) that are not in dataset "
            f"{params.dataset_id}: {', '.join(unknown[:5])}"
        )
    layout = _Layout(store, get_preset(params.base_preset).is_video, dest.parent / "_stills")
    val_dest = dest.parent / "validation"
    skipped: list[str] = []
    n, n_val = 0, 0
    for clip in dataset.clips:
        text = (texts.get(clip.clip_id) or "").strip()
        if not text:
            skipped.append(clip.clip_id)
            continue
        layout.add(clip, text, val_dest if clip.clip_id in held else dest)
        n += 1
        n_val += clip.clip_id in held
    if held and (n_val == 0 or n_val == n):
        raise InvalidInput(
            f"{VALIDATION_CLIPS}: {n_val} of the dataset's {n} captioned clips would validate; "
            "name at least one captioned clip and leave at least one to train on"
        )
    if n == 0:
        raise InvalidInput(
            f"dataset {params.dataset_id} has no captioned clips; run captioning "
            "(`loraforge caption`) before training"
        )
    return FetchedDataset(
        path=dest,
        dataset_id=dataset.id,
        samples=n - n_val,
        skipped=tuple(skipped),
        validation_path=val_dest if n_val else None,
        trigger=str(run.get("trigger") or ""),
        lora_type=dataset.lora_type,
        captions=tuple(t for t in texts.values() if t and t.strip()),
        reference_keyframes=tuple(reference_candidates(dataset.clips, REFERENCE_KEYFRAMES)),
    )


class _Layout:
    """Writes one clip and its caption into a seed-layout folder."""

    def __init__(self, store: ObjectStore, video_model: bool, stills: Path):
        self.store = store
        self.video_model = video_model
        self.stills = stills  # scratch for the videos an image model's stills come from

    def add(self, clip: DatasetClip, text: str, dest: Path) -> None:
        name = validate_key_part(clip.clip_id)
        suffix = Path(clip.key).suffix.lower() or ".mp4"
        if suffix in IMAGE_EXTS:
            caption = dest / "images" / f"{name}.txt"
            self.store.download(clip.bucket, clip.key, dest / "images" / f"{name}{suffix}")
        elif self.video_model:
            caption = dest / "captions" / f"{name}.txt"
            self.store.download(clip.bucket, clip.key, dest / "videos" / f"{name}{suffix}")
        else:
            caption = dest / "images" / f"{name}.txt"
            self.still(clip, dest / "images" / name, self.stills / f"{name}{suffix}")
        caption.parent.mkdir(parents=True, exist_ok=True)
        caption.write_text(text, encoding="utf-8")

    def still(self, clip: DatasetClip, stem: Path, video: Path) -> Path:
        """The clip's first keyframe when it is an image, else its middle frame (PNG)."""
        for key in clip.keyframe_keys[:1]:
            suffix = Path(key).suffix.lower()
            if suffix in IMAGE_EXTS:
                return self.store.download(clip.bucket, key, stem.with_suffix(suffix))
        import cv2  # heavy, and only an image model trained on video clips needs it

        self.store.download(clip.bucket, clip.key, video)
        cap = cv2.VideoCapture(str(video))
        try:
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, n // 2))
            ok, frame = cap.read()
        finally:
            cap.release()
        video.unlink(missing_ok=True)
        if not ok:
            raise InvalidInput(f"clip {clip.clip_id} ({clip.key}): no readable frame")
        out = stem.with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), frame)
        return out
