"""Which checkpoint of a finished training run to ship as `best`: likeness evaluation.

After `Trainer.run()` (``eval_every`` defaults to the checkpoint interval, so every
checkpoint and the final step have a validation loss, measured on the validation clips only:
train.py), for each checkpoint and the final step:

  1. its LoRA tensors are copied into the trainer's own pipeline (the PEFT adapter is still
     attached to the denoiser(s), so nothing is loaded twice and the render is exactly the
     trained LoRA at that step);
  2. a few previews are rendered: validation prompts = the trigger alone + 2-3 of the
     dataset's captions, fixed seeds, the training resolution, few inference steps; the same
     prompts and seeds for every checkpoint. A video LoRA's preview is a short clip
     (``video_frames``, 17 by default, at most the training frames): ``NN.mp4`` to watch the
     motion, ``NN_strip.png`` (a contact strip of its frames) and ``NN.png``, its middle frame,
     which is what likeness scores. I2V / FLF2V previews start from the first (and last)
     frame of a validation clip, which the LoRA never trained on;
  3. the previews are scored by :mod:`loraforge.evaluation`: identity against references
     built from the dataset's keyframes (most frontal first, per curation's head-pose
     buckets / yaw-pitch; the training stills when the dataset has no keyframes), diversity /
     collapse, and the held-out validation loss;
  4. :func:`loraforge.evaluation.choose.choose_checkpoint` picks the step. When no preview of
     any checkpoint shows a face (tiny random models, style/effect LoRAs) it falls back to the
     lowest validation loss and says so in the reason;
  5. strength: the chosen step's LoRA is rendered again (the same prompts and seeds) at each
     adapter weight of :data:`STRENGTH_WEIGHTS` and
     :func:`loraforge.evaluation.strength.recommend_strength` recommends one. The weight is
     applied by multiplying the PEFT ``LoraLayer.scaling`` of the trained adapter in every
     denoiser (what diffusers' ``set_adapters(..., adapter_weights=w)`` does; one code path for
     Wan, SDXL, Flux and SD1.5, whatever the target modules) and restored afterwards. When
     likeness is unmeasurable (no reference face, or no face in any render at any weight:
     tiny random models, style LoRAs) the recommendation is the documented default of the
     LoRA type, :data:`loraforge.render.scenario.DEFAULT_LORA_WEIGHTS` (1.0 for a character),
     and the reason says so. ``extra.eval_strength = false`` skips only this pass.

Everything here runs in a worker thread and is bounded by :class:`EvalSettings` (default 4
previews per checkpoint at the training resolution; 20 inference steps at the family's render
guidance on real weights, 4 at guidance 1.0 on tiny presets; the strength pass is
``len(STRENGTH_WEIGHTS)`` more preview sets of the chosen step). Evaluation settings
come from the job's ``extra`` under the ``eval_*`` names of :data:`EVAL_EXTRA`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from loraforge.curation.errors import InvalidReference
from loraforge.curation.faces import make_backend
from loraforge.evaluation.choose import (
    CheckpointEval,
    choose_checkpoint,
    evaluate_checkpoint,
    likeness,
)
from loraforge.evaluation.diversity import score_diversity
from loraforge.evaluation.identity import (
    IdentityScore,
    RenderFace,
    _pose_angle,
    build_references,
    score_identity,
)
from loraforge.evaluation.report import write_report
from loraforge.evaluation.strength import recommend_strength
from loraforge.evaluation.validation import ValidationLog, ValidationRecord
from loraforge.render.scenario import DEFAULT_LORA_WEIGHTS
from loraforge.runtime.errors import Cancelled, InvalidInput
from loraforge.runtime.params import LoraType
from loraforge.trainer.dataset import parse_resolution
from loraforge.trainer.family import to_pil_list
from loraforge.trainer.train import ADAPTER, VAL_NOISE_SEED

# job `extra` key -> EvalSettings field; popped before the RunConfig is built
EVAL_EXTRA = {
    "eval_previews": "previews",
    "eval_inference_steps": "inference_steps",
    "eval_guidance": "guidance",
    "eval_face_backend": "face_backend",
    "eval_seed": "seed",
    "eval_max_references": "max_references",
    "evaluate": "enabled",
    "eval_strength": "strength",
    "eval_prompts": "prompts",
}
MAX_PROMPTS = 16
# a converged sample of the flow-matching / DDIM schedulers at a fraction of the pipelines'
# 50 default steps (previews are rendered at every evaluation of every run)
REAL_PREVIEW_STEPS = 20
TINY_PREVIEW_STEPS = 4
MAX_PROMPT_CHARS = 500
# adapter weights tried for the strength recommendation (document 002: weak / normal / strong)
STRENGTH_WEIGHTS = (0.5, 0.7, 0.9, 1.0, 1.2)


@dataclass(frozen=True)
class EvalSettings:
    enabled: bool = True
    previews: int = 4  # renders per checkpoint
    # None: 4 steps at guidance 1.0 for tiny presets (tests: one forward a step), and for real
    # weights REAL_PREVIEW_STEPS at the family's render guidance (true CFG for Wan / SD, Flux's
    # distilled guidance), so a preview looks like what the user will render
    inference_steps: int | None = None
    guidance: float | None = None
    face_backend: str = "dlib"
    seed: int = 0  # previews use seeds seed, seed + 1, ...
    max_references: int = 5
    reference_candidates: int = 12  # keyframes downloaded / looked at, most frontal first
    # Wan previews: a short clip of 4k + 1 frames (at most the training frames): enough to see
    # an effect's motion (1 s at Wan's 16 fps) at a fraction of a full clip's cost
    video_frames: int = 17
    captions_in_prompts: int = 3
    strength: bool = True  # recommend an adapter weight for the chosen step
    prompts: tuple[str, ...] = ()  # the user's validation prompts (else trigger + captions)

    def __post_init__(self) -> None:
        if isinstance(self.prompts, str) or not all(isinstance(p, str) for p in self.prompts):
            raise InvalidInput("eval_prompts must be a list of prompts (text)")
        prompts = tuple(p.strip() for p in self.prompts)
        if any(not p for p in prompts):
            raise InvalidInput("eval_prompts: a prompt is empty; remove it or write one")
        if len(prompts) > MAX_PROMPTS or any(len(p) > MAX_PROMPT_CHARS for p in prompts):
            raise InvalidInput(
                f"eval_prompts: at most {MAX_PROMPTS} prompts of at most "
                f"{MAX_PROMPT_CHARS} characters each"
            )
        object.__setattr__(self, "prompts", prompts)
        if not 1 <= self.previews <= 64:
            raise InvalidInput(f"eval_previews must be 1..64, got {self.previews}")
        if self.inference_steps is not None and not 1 <= self.inference_steps <= 200:
            raise InvalidInput(f"eval_inference_steps must be 1..200, got {self.inference_steps}")
        if self.max_references < 1:
            raise InvalidInput("eval_max_references must be at least 1")


def split_extra(extra: Mapping[str, Any]) -> tuple[EvalSettings, dict[str, Any]]:
    """(evaluation settings, the rest of `extra` for the RunConfig)."""
    rest = {k: v for k, v in extra.items() if k not in EVAL_EXTRA}
    values = {EVAL_EXTRA[k]: v for k, v in extra.items() if k in EVAL_EXTRA}
    # `extra` crosses the wire as a protobuf Struct, whose numbers are all doubles: a whole
    # number is the int the field wants (eval_previews=1.0 would break range())
    values = {
        k: int(v) if isinstance(v, float) and v.is_integer() and k != "guidance" else v
        for k, v in values.items()
    }
    try:
        return EvalSettings(**values), rest
    except TypeError as e:
        raise InvalidInput(f"bad evaluation settings in extra: {e}") from None


def validation_prompts(
    trigger: str, captions: Sequence[str], n_captions: int = 3, custom: Sequence[str] = ()
) -> list[str]:
    """The user's prompts (``custom``, the trigger put in front where a prompt lacks it), else
    the trigger alone, then up to `n_captions` distinct dataset captions spread over the
    (sorted) set: caption-like prompts the LoRA was trained on, deterministic per dataset."""
    trigger = trigger.strip()
    if custom:
        return [
            p if not trigger or trigger.lower() in p.lower() else f"{trigger}, {p}" for p in custom
        ]
    prompts = [trigger] if trigger else []
    distinct = sorted({c.strip() for c in captions if c and c.strip()} - set(prompts))
    if distinct and n_captions > 0:
        k = min(n_captions, len(distinct))
        idx = sorted({round(i * (len(distinct) - 1) / max(1, k - 1)) for i in range(k)})
        prompts += [distinct[i][:300] for i in idx]
    return prompts or ["a photo"]


class LiveLikeness:
    """Likeness of each evaluated step's previews while training (the score the evaluation
    after training gives them: choose.likeness of their identity against the references).
    ``build`` returns (ReferenceFaces or None, face backend) and is called once, at the first
    step; None references (no face in the dataset's references) leave every step unscored."""

    def __init__(self, build: Callable[[], tuple[Any, Any]]):
        self._build = build
        self._built: tuple[Any, Any] | None = None
        self.values: dict[int, float] = {}  # step -> likeness (steps with a measurable one)

    def score(self, step: int, paths: Sequence[Path]) -> float | None:
        import cv2

        if self._built is None:
            self._built = self._build()
        refs, backend = self._built
        if refs is None:
            return None
        imgs = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in scored_previews(paths)]
        ident = score_identity(imgs, refs, backend)
        if ident.mean is None:  # no face in any preview: unmeasurable, not 0
            return None
        self.values[step] = round(likeness(ident), 4)  # as the evaluation's rows round it
        return self.values[step]


# ---------------------------------------------------------------- references


@dataclass(frozen=True)
class ReferenceCandidate:
    key: str  # in `bucket`
    pose: dict[str, Any]  # yaw / pitch / bucket from the curation manifest (may be empty)
    bucket: str = "clips"  # a dataset builder's derived item: "datasets"


def reference_candidates(clips: Sequence[Any], limit: int) -> list[ReferenceCandidate]:
    """Keyframes of the curated clips, most frontal first (curation's yaw/pitch, else its
    head-pose bucket; unknown poses last), then in dataset order."""
    cands = []
    for order, clip in enumerate(clips):
        m = getattr(clip, "metrics", None) or {}
        pose = {
            k: v
            for k, v in {
                "yaw": m.get("yaw"),
                "pitch": m.get("pitch"),
                "bucket": m.get("angle_bucket"),
            }.items()
            if v is not None
        }
        for j, key in enumerate(getattr(clip, "keyframe_keys", None) or []):
            if Path(key).suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp"):
                cands.append(
                    (
                        _pose_angle(pose or None, None, 0, 0),
                        order,
                        j,
                        ReferenceCandidate(key, pose, str(getattr(clip, "bucket", "clips"))),
                    )
                )
    cands.sort(key=lambda c: c[:3])
    return [c[3] for c in cands[:limit]]


# ---------------------------------------------------------------- results


@dataclass
class RunEvaluation:
    best_step: int
    reason: str
    basis: str
    objective: str
    rows: list[dict[str, Any]]
    prompts: list[str]
    previews: dict[int, list[Path]]  # step -> PNG files
    report_dir: Path
    best_files: dict[str, Path]  # denoiser attribute -> exported best LoRA file
    references: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    recommended_weight: float | None = None
    strength_reason: str = ""
    strength_rows: list[dict[str, Any]] = field(default_factory=list)  # one per adapter weight

    def summary(self) -> dict[str, Any]:
        return {
            "best_step": self.best_step,
            "best_reason": self.reason,
            "basis": self.basis,
            "objective": self.objective,
            "prompts": self.prompts,
            "references": self.references,
            "settings": self.settings,
            "seconds": round(self.seconds, 3),
            "checkpoints": self.rows,
            "recommended_weight": self.recommended_weight,
            "strength_reason": self.strength_reason,
            "strengths": self.strength_rows,
        }


def default_weight(lora_type: Any) -> float:
    """The documented default adapter weight of a LoRA type (scenario.DEFAULT_LORA_WEIGHTS;
    1.0 for a character and for an unknown type)."""
    try:
        return DEFAULT_LORA_WEIGHTS[
            LoraType(str(getattr(lora_type, "value", lora_type) or "character"))
        ]
    except (ValueError, KeyError):
        return 1.0


def _type_name(lora_type: Any) -> str:
    return str(getattr(lora_type, "value", lora_type) or "character")


def default_strength(lora_type: Any, why: str) -> tuple[float, str]:
    """(the type's default weight, a reason saying why the default was used)."""
    w = default_weight(lora_type)
    return w, (
        f"{why}; recommending the documented default weight {w} for a {_type_name(lora_type)} LoRA"
    )


@contextmanager
def adapter_scale(
    models: Iterable[torch.nn.Module], weight: float, adapter: str = "default"
) -> Iterator[int]:
    """Multiply the PEFT adapter's scaling (alpha / r) of every LoRA layer by `weight` for the
    duration: the LoRA's contribution becomes `weight` x (B A x) exactly as a ComfyUI / diffusers
    LoRA weight. Restored on exit, whatever happens. Yields the number of layers scaled."""
    from peft.tuners.lora import LoraLayer

    saved: list[tuple[dict[str, Any], Any]] = []
    try:
        for model in models:
            for m in model.modules():
                if isinstance(m, LoraLayer) and adapter in m.scaling:
                    saved.append((m.scaling, m.scaling[adapter]))
                    m.scaling[adapter] = m.scaling[adapter] * float(weight)
        yield len(saved)
    finally:
        for scaling, value in saved:
            scaling[adapter] = value


# ---------------------------------------------------------------- the evaluation


def _plain(o: Any) -> Any:
    return o.item() if hasattr(o, "item") else str(o)


def _to_bgr(frame: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W, C), float in [0, 1] -> BGR uint8."""
    a = (
        frame.detach().float().cpu().numpy()
        if isinstance(frame, torch.Tensor)
        else np.asarray(frame)
    )
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = a.transpose(1, 2, 0)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a[..., :3][..., ::-1])


def _frames(out: Any, video: bool) -> list[np.ndarray]:
    """The pipeline output (output_type="pt") -> BGR frames (one for an image)."""
    if isinstance(out, (list, tuple)):
        out = out[0]
    t = out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))
    if video:
        if t.dim() == 5:  # (B, F, C, H, W)
            t = t[0]
        return [_to_bgr(f) for f in t]
    if t.dim() == 4:
        t = t[0]
    return [_to_bgr(t)]


PREVIEW_FPS = 16  # Wan's frame rate
STRIP_FRAMES = 8


def write_preview_video(frames: Sequence[np.ndarray], path: Path, fps: int = PREVIEW_FPS) -> Path:
    """BGR frames -> H.264 MP4 (yuv420p, plays in browsers), through ffmpeg."""
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        macro_block_size=1,
        output_params=["-preset", "veryfast", "-crf", "18"],
    )
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f[..., ::-1]))  # RGB
    writer.close()
    return path


def contact_strip(frames: Sequence[np.ndarray], count: int = STRIP_FRAMES) -> np.ndarray:
    """Up to ``count`` frames evenly spread over the clip, side by side (BGR)."""
    n = len(frames)
    k = min(count, n)
    idx = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})
    return np.concatenate([frames[i] for i in idx], axis=1)


def _read_bgr(path: Path) -> np.ndarray:
    """A preview this evaluation wrote, as a BGR image."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise InvalidInput(f"preview {path} cannot be read back as an image")
    return np.asarray(img)


def scored_previews(paths: Sequence[Path]) -> list[Path]:
    """The still of each preview (``NN.png``), what likeness scores; not its clip or strip."""
    return [p for p in paths if p.suffix == ".png" and not p.stem.endswith("_strip")]


class CheckpointEvaluator:
    """Render, score and choose; `trainer` is the finished Trainer (its pipeline and params)."""

    def __init__(
        self,
        trainer: Any,
        settings: EvalSettings,
        *,
        progress: Callable[[float, str], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        log: Callable[[str], None] | None = None,
        rendered: Mapping[int, Sequence[Path]] | None = None,
    ):
        self.trainer = trainer
        self.settings = settings
        # step -> previews already rendered with that step's LoRA and these settings (during
        # training, by :meth:`render_step`): run() scores them instead of rendering again
        self.rendered = dict(rendered or {})
        self.progress = progress or (lambda f, m: None)
        self.should_cancel = should_cancel or (lambda: False)
        self.log = log or (lambda m: None)

    # -------------------------------------------- LoRA state

    def load_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        params = self.trainer.params
        missing = set(params) - set(tensors)
        if missing:
            raise InvalidInput(
                f"checkpoint does not match the trained LoRA (missing {sorted(missing)[:3]})"
            )
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(tensors[k].to(p.device, p.dtype))

    # -------------------------------------------- previews

    def _size(self) -> tuple[int, int]:
        t = self.trainer
        return parse_resolution(t.args.resolution, t.preset.stride, t.preset.family)

    def _still(self, index: int, last: bool = False) -> Any:
        """First (last) frame of a validation clip (of a training clip without a validation
        set): I2V / FLF2V previews start from frames the LoRA was not trained on."""
        ds = self.trainer.validation if self.trainer.validation.samples else self.trainer.dataset
        px = ds.load_pixels(index % len(ds.samples))  # (C, F, H, W)
        return to_pil_list(px[:, -1 if last else 0].unsqueeze(0))[0]

    def _steps(self) -> int:
        if self.settings.inference_steps is not None:
            return self.settings.inference_steps
        return TINY_PREVIEW_STEPS if self.trainer.preset.tiny else REAL_PREVIEW_STEPS

    def _guidance(self) -> float:
        if self.settings.guidance is not None:
            return self.settings.guidance
        t = self.trainer
        return 1.0 if t.preset.tiny else float(getattr(t.family, "RENDER_GUIDANCE", 1.0))

    def render(self, prompts: Sequence[str]) -> list[np.ndarray]:
        """One BGR still per preview: the image, or a clip's middle frame."""
        return [f[len(f) // 2] for f in self.render_clips(prompts)]

    def render_clips(self, prompts: Sequence[str]) -> list[list[np.ndarray]]:
        """The frames of each preview (one for an image model)."""
        t = self.trainer
        video = t.preset.is_video
        w, h = self._size()
        frames = 1
        extra: dict[str, Any] = {}
        if video:
            frames = min(int(t.args.frames), self.settings.video_frames)
            frames = max(1, (frames - 1) // 4 * 4 + 1)
            if t.variant in ("i2v", "flf2v"):
                extra["image"] = self._still(0)
                if t.variant == "flf2v":
                    extra["last_image"] = self._still(0, last=True)
        for m in t.family.denoisers(t.pipe).values():
            m.eval()
        if hasattr(t.pipe, "set_progress_bar_config"):
            t.pipe.set_progress_bar_config(disable=True)
        cuda = t.device.type == "cuda"
        out = []
        for i in range(self.settings.previews):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                res = t.family.generate(
                    t.pipe,
                    prompts[i % len(prompts)],
                    self.settings.seed + i,
                    w,
                    h,
                    frames,
                    steps=self._steps(),
                    guidance=self._guidance(),
                    variant=t.variant,
                    **extra,
                )
            out.append(_frames(res, video))
        return out

    def render_step(self, step: int, prompts: Sequence[str], out_dir: Path) -> list[Path]:
        """Render the previews of the LoRA as it is now (``step``'s) into
        ``out_dir/previews/step-N/NN.png``; remembered for :meth:`run`."""
        import cv2

        d = out_dir / "previews" / f"step-{step}"
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, frames in enumerate(self.render_clips(prompts)):
            p = d / f"{i:02d}.png"
            cv2.imwrite(str(p), frames[len(frames) // 2])  # PNG: read back bit-identical
            paths.append(p)
            if len(frames) > 1:  # a video LoRA: its motion, as a clip and a contact strip
                paths.append(write_preview_video(frames, d / f"{i:02d}.mp4"))
                strip = d / f"{i:02d}_strip.png"
                cv2.imwrite(str(strip), contact_strip(frames))
                paths.append(strip)
        self.rendered[step] = paths
        return paths

    def _previews_of(
        self,
        step: int,
        state: Callable[[], Mapping[str, torch.Tensor]],
        prompts: Sequence[str],
        out_dir: Path,
    ) -> tuple[list[Path], list[np.ndarray]]:
        paths = list(self.rendered.get(step) or [])
        if not paths or not all(p.is_file() for p in paths):
            self.load_state(state())
            paths = self.render_step(step, prompts, out_dir)
        return paths, [_read_bgr(p) for p in scored_previews(paths)]

    # -------------------------------------------- references

    def references(
        self, images: Sequence[tuple[np.ndarray, dict[str, Any] | None, str]], backend: Any
    ) -> tuple[Any, dict[str, Any]]:
        """ReferenceFaces (or None) and a description for the record. `images` are
        (BGR image, pose metadata, name); without any, the training stills are used."""
        source = "keyframes"
        if not images:
            source = "training stills"
            ds = self.trainer.dataset
            n = min(len(ds.samples), self.settings.reference_candidates)
            images = []
            for i in range(n):
                px = ds.load_pixels(i)
                mid = px[:, px.shape[1] // 2]
                images.append((_to_bgr((mid + 1) / 2), None, f"sample[{i}]"))
        try:
            refs = build_references(
                [im for im, _, _ in images],
                backend,
                poses=[p for _, p, _ in images],
                max_refs=self.settings.max_references,
            )
        except InvalidReference as e:
            return None, {
                "source": source,
                "candidates": len(images),
                "used": 0,
                "backend": backend.name,
                "note": str(e),
            }
        names = {f"image[{i}]": n for i, (_, _, n) in enumerate(images)}
        return refs, {
            "source": source,
            "candidates": len(images),
            "used": len(refs.sources),
            "backend": backend.name,
            "images": [names.get(s, s) for s in refs.sources],
        }

    # -------------------------------------------- scoring

    @staticmethod
    def _faces_only(step: int, imgs: list[np.ndarray], backend: Any, val_loss: float | None) -> Any:
        """No references: faces are still detected (masked for diversity), nothing to compare."""
        per = []
        for img in imgs:
            boxes = tuple(f.box for f in backend.detect(img, embed_largest=False))
            per.append(RenderFace(False, None, None, boxes))
        n = len(imgs)
        ident = IdentityScore(n, 0, sum(1 for r in per if r.boxes) / n, None, None, 0.0, per)
        div = score_diversity(imgs, [r.boxes for r in per])
        return CheckpointEval(step, ident, div, val_loss=val_loss)

    # -------------------------------------------- strength

    def _adapter_models(self) -> list[torch.nn.Module]:
        t = self.trainer
        models = getattr(t, "models", None) or t.family.denoisers(t.pipe)
        return list(models.values())

    def render_at(self, weight: float, prompts: Sequence[str]) -> list[np.ndarray]:
        """The preview set with the loaded LoRA applied at adapter weight `weight`."""
        with adapter_scale(self._adapter_models(), weight, ADAPTER) as n:
            if not n:
                raise InvalidInput("no LoRA layer of the trained adapter to scale")
            return self.render(prompts)

    def strength(
        self,
        refs: Any,
        backend: Any,
        prompts: Sequence[str],
        lora_type: Any = None,
        weights: Sequence[float] = STRENGTH_WEIGHTS,
        on_weight: Callable[[int, float], None] | None = None,
    ) -> tuple[float | None, str, list[dict[str, Any]]]:
        """(recommended weight, reason, one row per weight) for the LoRA currently loaded.
        Unmeasurable likeness gives the type's default weight; nothing is rendered without
        references."""
        if not self.settings.strength:
            return default_strength(
                lora_type, "the strength pass was turned off (extra.eval_strength = false)"
            ) + ([],)
        if refs is None:
            return default_strength(
                lora_type,
                "likeness is unmeasurable (no reference face in "
                "the dataset), so no weight was rendered",
            ) + ([],)
        order = sorted({round(float(w), 4) for w in weights})

        def render_at(w: float) -> list[np.ndarray]:
            if self.should_cancel():
                raise Cancelled(f"strength evaluation stopped before weight {w}")
            if on_weight is not None:
                on_weight(order.index(w) if w in order else 0, w)
            return self.render_at(w, prompts)

        try:
            rec = recommend_strength(render_at, refs, backend, weights=order)
        except Cancelled:
            raise
        except Exception as e:
            self.log(f"strength evaluation failed: {type(e).__name__}: {e}")
            return default_strength(
                lora_type, f"the strength evaluation failed ({type(e).__name__}: {e})"
            ) + ([],)
        rows = json.loads(json.dumps(rec.rows, default=_plain))
        weight, reason = rec.weight, rec.reason
        if all(not r.get("n_faces") for r in rows):
            weight, reason = default_strength(
                lora_type,
                f"likeness is unmeasurable: no render at weights "
                f"{', '.join(str(w) for w in order)} shows a face",
            )
        elif weight is None:
            weight, reason = default_strength(lora_type, rec.reason)
        for r in rows:
            r["recommended"] = r["weight"] == weight
        return weight, reason, rows

    def run(
        self,
        states: Mapping[int, Callable[[], Mapping[str, torch.Tensor]]],
        val_losses: Mapping[int, float],
        reference_images: Sequence[tuple[np.ndarray, dict[str, Any] | None, str]],
        prompts: Sequence[str],
        out_dir: Path,
        title: str = "LoRA evaluation",
        lora_type: Any = None,
        weights: Sequence[float] = STRENGTH_WEIGHTS,
        backend: Any = None,
        val_bands: Mapping[int, Mapping[str, float]] | None = None,
    ) -> RunEvaluation:
        """`states`: step -> a loader of that step's LoRA tensors (trainer param names);
        `lora_type` picks the default weight when likeness is unmeasurable; `backend` is a
        face backend (default: ``make_backend(settings.face_backend)``)."""
        start = time.monotonic()
        steps = sorted(states)
        if not steps:
            raise InvalidInput("no checkpoint to evaluate")
        self.progress(0.0, "building reference faces")
        backend = backend or make_backend(self.settings.face_backend)
        refs, ref_info = self.references(reference_images, backend)
        self.log(f"evaluation references: {ref_info}")
        prompts = list(prompts)
        render_prompts = [prompts[i % len(prompts)] for i in range(self.settings.previews)]
        evals, previews = [], {}
        units = len(steps) + (len(weights) if self.settings.strength and refs is not None else 0)
        for n, step in enumerate(steps):
            if self.should_cancel():
                raise Cancelled(f"evaluation stopped before step {step}")
            self.progress(
                0.95 * n / units,
                f"evaluating checkpoint step {step} ({n + 1}/{len(steps)}): rendering previews",
            )
            previews[step], imgs = self._previews_of(step, states[step], prompts, out_dir)
            vl = val_losses.get(step)
            if refs is not None:
                evals.append(
                    evaluate_checkpoint(
                        step, imgs, refs, backend, prompts=render_prompts, val_loss=vl
                    )
                )
            else:
                evals.append(self._faces_only(step, imgs, backend, vl))
        choice = choose_checkpoint(evals)
        reason = choice.reason
        if refs is None:
            reason = f"no reference face in the dataset's {ref_info['source']}; {reason}"
        self.progress(0.95 * len(steps) / units, f"chose step {choice.step}; writing the report")
        log = ValidationLog()
        n_samples = len(self.trainer.validation.samples)
        # the validation protocol (train.py: Trainer.evaluate), timesteps on a 0..1000 scale
        timesteps = tuple(int(f * 1000) for f in self.trainer.validation_timesteps())
        for s in sorted(val_losses):
            bands = (val_bands or {}).get(s) or {}
            log.record(
                ValidationRecord(
                    int(s),
                    float(val_losses[s]),
                    timesteps,
                    VAL_NOISE_SEED,
                    n_samples,
                    dict(zip(timesteps, bands.values(), strict=False)),
                )
            )
        report_dir = out_dir / "report"
        write_report(choice, report_dir, validation=log if val_losses else None, title=title)
        (report_dir / "reason.txt").write_text(reason + "\n")
        # the chosen step's LoRA in the family's file layout, like `last`
        self.load_state(states[choice.step]())
        best = self.trainer.export(
            out_dir / "best",
            extra_metadata={
                "loraforge.checkpoint_step": str(choice.step),
                "loraforge.best_reason": reason[:1000],
            },
        )
        rows = json.loads(json.dumps(choice.rows, default=_plain))
        # the adapter weight for the chosen step (its tensors are loaded)
        weight, s_reason, s_rows = self.strength(
            refs,
            backend,
            prompts,
            lora_type,
            weights,
            on_weight=lambda i, w: self.progress(
                0.95 * (len(steps) + i) / units, f"step {choice.step} at LoRA weight {w}"
            ),
        )
        self.log(f"recommended LoRA weight {weight}: {s_reason}")
        (report_dir / "strength.txt").write_text(f"recommended weight {weight}: {s_reason}\n")
        return RunEvaluation(
            choice.step,
            reason,
            choice.basis,
            choice.objective,
            rows,
            prompts,
            previews,
            report_dir,
            best,
            ref_info,
            asdict(self.settings),
            time.monotonic() - start,
            weight,
            s_reason,
            s_rows,
        )
