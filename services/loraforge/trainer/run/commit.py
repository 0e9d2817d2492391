"""A trained run committed to ``loras/<run>/``: the last and best LoRA files, the evaluation
(previews, report) or why there is none, the loss curve, and ``run.json`` written last (its
existence means the job is done); and the JobOutcome a run record answers with."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from loraforge.evaluation.report import write_loss_curve
from loraforge.runtime.events import Event
from loraforge.runtime.job_service import JobOutcome
from loraforge.runtime.jobs import ArtifactRef, Job
from loraforge.runtime.storage import Bucket, ObjectStore
from loraforge.trainer.checkpoints import RunEvaluation, default_strength
from loraforge.trainer.live_previews import content_type as preview_content_type
from loraforge.trainer.live_previews import lora_artifact
from loraforge.trainer.run.context import RunContext, Trained
from loraforge.trainer.run.evaluate import NotEvaluated
from loraforge.trainer.run.layout import lora_key, preview_key, record_key, report_key
from loraforge.trainer.run.sync import LORA_CONTENT_TYPE, CheckpointSync
from loraforge.trainer.train import TrainResult

COMPLETED_EVENT = "training.completed"
REPORT_TYPES = {
    ".html": "text/html",
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".png": "image/png",
    ".txt": "text/plain",
}

Artifacts = list[dict[str, Any]]  # the run record's artifact entries (lora_artifact)


def read_record(store: ObjectStore, prefix: str) -> dict[str, Any] | None:
    """The run.json of a run that is done, else None."""
    if store.stat(Bucket.LORAS, record_key(prefix)) is None:
        return None
    record: dict[str, Any] = store.get_json(Bucket.LORAS, record_key(prefix))
    return record


def commit_run(
    store: ObjectStore,
    run: RunContext,
    trained: Trained,
    sync: CheckpointSync,
    evaluation: RunEvaluation | NotEvaluated,
) -> dict[str, Any]:
    """Upload what is left and write run.json; the record."""
    sync.upload_new()
    artifacts = sync.artifacts()
    result = trained.result
    best = evaluation.best_files if isinstance(evaluation, RunEvaluation) else result.files
    files = _upload_loras(store, run.prefix, result.files, best, artifacts)
    if isinstance(evaluation, RunEvaluation):
        ev = _upload_evaluation(store, run.prefix, evaluation, artifacts, trained.uploaded_previews)
    else:
        ev = _not_evaluated(run, result, evaluation)
    record = _record(run, trained, sync, files, ev)
    record["artifacts"] = artifacts  # the loss curve's still goes in: the same list
    record["loss_curve_key"] = _upload_loss_curve(store, run.prefix, result, artifacts)
    store.put_json(Bucket.LORAS, record_key(run.prefix), record)
    return record


def _upload_loras(
    store: ObjectStore,
    prefix: str,
    last: dict[str, Path],
    best: dict[str, Path],
    artifacts: Artifacts,
) -> dict[str, dict[str, str]]:
    """last/best[.<expert>].safetensors; {"last"|"best": {denoiser attribute: key}}."""
    files: dict[str, dict[str, str]] = {}
    for i, attr in enumerate(last):  # denoiser attributes, first = the main file
        suffix = "" if i == 0 else "." + _expert_tag(Path(last[attr]), attr)
        for which, path in (("last", Path(last[attr])), ("best", Path(best[attr]))):
            stored = store.put_file(
                Bucket.LORAS,
                lora_key(prefix, which, suffix),
                path,
                content_type=LORA_CONTENT_TYPE,
            )
            files.setdefault(which, {})[attr] = stored.key
            artifacts.append(lora_artifact(stored, "lora"))
    return files


def _not_evaluated(run: RunContext, result: TrainResult, why: NotEvaluated) -> dict[str, Any]:
    """No renders: the final step, at the LoRA type's documented default weight."""
    weight, reason = default_strength(
        run.dataset.lora_type, "likeness was not evaluated (see best_reason)"
    )
    return {
        "best_step": result.step,
        "best_reason": why.reason,
        "report_key": None,
        "evaluation": None,
        "recommended_weight": weight,
        "strength_reason": reason,
    }


def _upload_evaluation(
    store: ObjectStore,
    prefix: str,
    evaluation: RunEvaluation,
    artifacts: Artifacts,
    uploaded_previews: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The previews not uploaded while training, the report folder; the record's fields."""
    previews: dict[str, list[str]] = {}
    for step, paths in sorted(evaluation.previews.items()):
        for p in paths:
            key = preview_key(prefix, step, p)
            artifact = uploaded_previews.get(key)
            if artifact is None:
                stored = store.put_file(Bucket.LORAS, key, p, content_type=preview_content_type(p))
                artifact = lora_artifact(stored, "preview")
            previews.setdefault(str(step), []).append(artifact["key"])
            artifacts.append(artifact)
    report = None
    for p in sorted(evaluation.report_dir.iterdir()):
        if not p.is_file():
            continue
        stored = store.put_file(
            Bucket.LORAS,
            report_key(prefix, p.name),
            p,
            content_type=REPORT_TYPES.get(p.suffix, "application/octet-stream"),
        )
        if p.name == "report.html":
            report = stored.key
            artifacts.append(lora_artifact(stored, "report"))
    summary = evaluation.summary()
    summary["previews"] = previews
    return {
        "best_step": evaluation.best_step,
        "best_reason": evaluation.reason,
        "report_key": report,
        "evaluation": summary,
        "recommended_weight": evaluation.recommended_weight,
        "strength_reason": evaluation.strength_reason,
    }


def _record(
    run: RunContext,
    trained: Trained,
    sync: CheckpointSync,
    files: dict[str, dict[str, str]],
    evaluation: dict[str, Any],
) -> dict[str, Any]:
    """run.json without its artifacts and loss curve (commit_run adds them)."""
    trainer, result = trained.trainer, trained.result
    main = next(iter(result.files))
    a = trainer.args
    losses = result.losses
    return {
        "job_id": run.job.id,
        "run_prefix": run.prefix,
        "last_key": files["last"][main],
        "best_key": files["best"][main],
        "files": files,
        "best_is": f"step {evaluation['best_step']}",
        **evaluation,
        "base_preset": run.params.base_preset,
        "family": trainer.preset.family,
        "dataset_id": run.dataset.dataset_id,
        "dataset_hash": trainer.dataset.content_hash,
        "samples": len(trainer.dataset.samples),
        "skipped_clips": list(run.dataset.skipped),
        "trigger": run.dataset.trigger,
        "lora_type": run.dataset.lora_type,
        "rank": a.rank,
        "alpha": a.alpha,
        "steps": result.step,
        # epochs as asked and what they became (steps = epochs x steps_per_epoch)
        "epochs": a.epochs,
        "steps_per_epoch": a.steps_per_epoch,
        "validation": trainer.validation_summary(),
        "metrics": {
            "final_loss": losses[-1] if losses else None,
            "mean_loss_last_10": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
            "eval_losses": {str(k): v for k, v in result.eval_losses.items()},
            "eval_bands": {str(k): v for k, v in result.eval_bands.items()},
            "seconds": round(result.seconds, 3),
        },
        "loss_history": losses,  # this delivery's steps (after resumed_from_step)
        "resumed_from_step": result.step - len(losses),
        "cache": {
            k: getattr(trainer.cache, k, None) for k in ("hits", "local_hits", "misses", "uploads")
        },
        "checkpoints": {str(s): sync.uploaded[s]["key"] for s in sorted(sync.uploaded)},
        "training_args": json.loads(json.dumps(a.training_args(), default=str)),
        "warnings": list(a.warnings) + list(getattr(trainer.dataset, "skipped", []) or []),
        "finished_at": time.time(),
    }


def _upload_loss_curve(
    store: ObjectStore, prefix: str, result: TrainResult, artifacts: Artifacts
) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_loss_curve(
            Path(tmp) / "loss.png",
            result.losses,
            first_step=result.step - len(result.losses) + 1,
            eval_losses=result.eval_losses,
        )
        stored = store.put_file(
            Bucket.LORAS, report_key(prefix, "loss.png"), path, content_type="image/png"
        )
    artifacts.append(lora_artifact(stored, "report"))
    return stored.key


def outcome(job: Job, record: dict[str, Any]) -> JobOutcome:
    """What a committed run answers with: the same for a run just trained, one found done
    (a redelivered or retried job) and one a Kubernetes pod committed."""
    data = {
        "job_id": job.id,
        "run_prefix": record["run_prefix"],
        "last_key": record["last_key"],
        "best_key": record["best_key"],
        "base_preset": record["base_preset"],
        "dataset_id": record["dataset_id"],
        "trigger": record["trigger"],
        "steps": record["steps"],
        "final_loss": record["metrics"]["final_loss"],
        "best_step": record.get("best_step"),
        "best_reason": record.get("best_reason"),
        "report_key": record.get("report_key"),
        "recommended_weight": record.get("recommended_weight"),
        "strength_reason": record.get("strength_reason"),
        # what a sweep scores (evaluation/sweep.py: OBJECTIVES)
        "val_losses": record["metrics"].get("eval_losses") or {},
        "likeness": _likeness_by_step(record),
    }
    artifacts = [ArtifactRef(**a) for a in record["artifacts"]]
    artifacts.append(
        ArtifactRef(bucket="loras", key=record_key(record["run_prefix"]), kind="manifest")
    )
    loss = record["metrics"]["final_loss"]
    return JobOutcome(
        message=f"{record['steps']} steps on {record['samples']} sample(s)"
        + (f", final loss {loss:.4f}" if loss is not None else ""),
        artifacts=artifacts,
        result=data,
        events=[
            Event(
                id=f"training-completed-{job.id}",
                type=COMPLETED_EVENT,
                tenant=job.tenant,
                project=job.project,
                data=data,
            )
        ],
    )


def _likeness_by_step(record: dict[str, Any]) -> dict[str, float]:
    """Each evaluated step's likeness when the evaluation measured it (a face in the
    previews and in the references), else empty."""
    ev = record.get("evaluation") or {}
    if ev.get("basis") != "likeness":
        return {}
    return {
        str(r["step"]): float(r["likeness"])
        for r in ev.get("checkpoints") or []
        if r.get("likeness") is not None
    }


def _expert_tag(path: Path, attr: str) -> str:
    """`lora.low_noise.safetensors` -> `low_noise`; else the denoiser attribute."""
    parts = path.name.split(".")
    return parts[-2] if len(parts) >= 3 else attr
