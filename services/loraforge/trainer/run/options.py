"""What a training job's parameters may say: checked when the job is started (the servicer's
StartTraining), so a typo or a wrong value is refused before a job exists, and again when it
runs (a job record may come from elsewhere, e.g. a batch system)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.params import TrainingParams
from loraforge.trainer.checkpoints import EvalSettings, split_extra
from loraforge.trainer.config import RunConfig

# RunConfig fields the service owns: `extra` may not point them elsewhere.
RESERVED_EXTRA = frozenset(
    {
        "preset",
        "dataset",
        "output_dir",
        "cache_dir",
        "models_dir",
        "name",
        "dataset_id",
        "resume",
        "validation_dataset",
    }
)
# `extra` keys of the service itself: the dataset's clips to validate on instead of seed
# 004's split (the service builds `validation_dataset` from them)
VALIDATION_CLIPS = "validation_clips"


def validate_extra(extra: dict[str, Any]) -> tuple[EvalSettings, dict[str, Any]]:
    """(evaluation settings, RunConfig options) of a job's ``extra``, each option checked by
    name and type against RunConfig, so a typo or a wrong value is refused when the job is
    started, not when it runs."""
    settings, rest = split_extra(extra)
    validation_clip_ids(rest)
    rest.pop(VALIDATION_CLIPS, None)
    bad = sorted(RESERVED_EXTRA & set(rest))
    if bad:
        raise InvalidInput(f"extra may not set {', '.join(bad)}: the trainer service sets them")
    fields = RunConfig.model_fields
    unknown = sorted(set(rest) - set(fields))
    if unknown:
        raise InvalidInput(
            f"unknown training option(s) {', '.join(unknown)}; the options are RunConfig's "
            "fields (`loraforge-train --help` lists them, e.g. block_swap, fp8_base, use_dora)"
        )
    for name, value in rest.items():
        field = fields[name]
        try:
            typ: Any = (
                Annotated[(field.annotation, *field.metadata)]
                if field.metadata
                else field.annotation
            )
            TypeAdapter(typ).validate_python(value)
        except ValidationError as exc:
            reason = exc.errors()[0].get("msg", str(exc))
            raise InvalidInput(f"training option {name}={value!r}: {reason}") from None
    return settings, rest


def refuse_conflicts(params: TrainingParams) -> None:
    """What the job's fields and its extra cannot both say, refused at StartTraining."""
    if params.steps is not None and params.extra.get("epochs") is not None:
        raise InvalidInput(
            f"set steps or epochs, not both (steps={params.steps}, epochs="
            f"{params.extra['epochs']}): steps counts optimizer steps, epochs passes over the "
            "training clips (steps = epochs x ceil(clips / batch))"
        )


def validation_clip_ids(extra: dict[str, Any]) -> list[str]:
    """``extra.validation_clips``: clip ids of the dataset held out as the validation set."""
    ids = extra.get(VALIDATION_CLIPS, [])
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise InvalidInput(f"{VALIDATION_CLIPS} must be a list of clip ids of the dataset")
    return list(dict.fromkeys(ids))


def refuse_kubernetes(params: TrainingParams) -> None:
    """For a trainer service without Kubernetes Jobs (LORAFORGE_K8S__TRAINING_JOBS off)."""
    if params.on_kubernetes:
        raise InvalidInput(
            "on_kubernetes training is not enabled on this trainer service: set "
            "LORAFORGE_K8S__TRAINING_JOBS=true (with LORAFORGE_K8S__NAMESPACE and "
            "LORAFORGE_K8S__TRAINER_IMAGE) where the service can reach the Kubernetes API with "
            "the Job RBAC of k8s/base/rbac.yaml; or start the run without on_kubernetes to "
            "train on this service's own device"
        )
