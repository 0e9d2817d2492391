"""Every key of one training run's folder (bucket ``loras``), spelled once.

<t>/<p>/runs/<job_id>/last[.<expert>].safetensors   the final LoRA (one file per expert)
                      best[.<expert>].safetensors   the chosen step's LoRA
                      checkpoints/step-N/<file>     adapter.safetensors (written last: the
                                                    step is uploaded), the family-layout
                                                    export(s), the newest step's resume state
                      previews/step-N/<file>        renders of each evaluated step
                      report/<file>                 evaluation report, loss curve
                      run.json                      commit marker, written last
"""

from __future__ import annotations

from pathlib import Path

from loraforge.runtime.keys import ProjectRef

RECORD = "run.json"
RUNS = "runs"
CHECKPOINTS = "checkpoints"
STEP = "step-"


def run_prefix(ref: ProjectRef, job_id: str) -> str:
    """The run's folder: the job id is the run id."""
    return ref.key(RUNS, job_id)


def record_key(prefix: str) -> str:
    return f"{prefix}/{RECORD}"


def lora_key(prefix: str, which: str, expert_suffix: str = "") -> str:
    """``which``: last or best; ``expert_suffix``: "" for the main file, else ``.<tag>``."""
    return f"{prefix}/{which}{expert_suffix}.safetensors"


def checkpoints_prefix(prefix: str) -> str:
    return f"{prefix}/{CHECKPOINTS}/"


def checkpoint_key(prefix: str, step: int, name: str) -> str:
    return f"{checkpoints_prefix(prefix)}{STEP}{step}/{name}"


def checkpoint_step(prefix: str, key: str, name: str) -> int | None:
    """The step of ``checkpoint_key(prefix, step, name)``; None for any other key."""
    parts = key.removeprefix(checkpoints_prefix(prefix)).split("/")
    if len(parts) != 2 or parts[1] != name or not parts[0].startswith(STEP):
        return None
    return step_of(parts[0])


def step_of(folder_name: str) -> int | None:
    """``step-N`` (a checkpoint folder, local or remote; local ones are zero-padded) -> N."""
    try:
        return int(folder_name.removeprefix(STEP))
    except ValueError:
        return None


def preview_key(prefix: str, step: int, path: Path) -> str:
    return f"{prefix}/previews/{STEP}{step}/{path.name}"


def report_key(prefix: str, name: str) -> str:
    return f"{prefix}/report/{name}"
