"""What a render job leaves in the renders bucket, spelled once for the scenario renders
(worker.py, k8s_run.py) and the deployment calls (warm.py):

    renders  <t>/<p>/renders/<job_id>/render.json   commit marker: RenderRecord or CallRecord

The record is written last; when it exists the job is done and a redelivery answers with it.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from loraforge.runtime.keys import ProjectRef

RECORD = "render.json"
COMPLETED_EVENT = "render.completed"


def render_prefix(ref: ProjectRef, job_id: str) -> str:
    return ref.key("renders", job_id)


def record_key(ref: ProjectRef, job_id: str) -> str:
    return f"{render_prefix(ref, job_id)}/{RECORD}"


class Artifact(TypedDict):
    """One stored output, in the fields of runtime.jobs.ArtifactRef."""

    bucket: str
    key: str
    kind: str
    size: int
    sha256: str


class RenderRecord(TypedDict):
    """render.json of a scenario render (keys of the renders bucket)."""

    scenario: dict[str, Any]  # the Scenario as rendered (overrides applied), JSON form
    keyframes: list[str | None]
    transitions: list[str | None]
    film: str | None
    thumbnails: str | None
    warnings: list[str]
    # stage -> where its pipeline ran (executor.RenderResult.placement); absent in records
    # written before placement was recorded
    placement: NotRequired[dict[str, dict[str, Any]]]
    artifacts: list[Artifact]


class CallInputs(TypedDict):
    image: str
    last_image: str


class CallInfo(TypedDict):
    """What a deployment call rendered and how (warm.DeploymentCallWork)."""

    deployment: str
    lora: str
    lora_key: str
    preset: str
    mode: str
    strength: float
    prompt: str
    prompt_from: str
    description: str
    described_by: str
    seed: int
    inputs: CallInputs
    width: int
    height: int
    frames: int
    fps: int
    steps: int
    warm: bool
    load_s: float
    render_s: float
    placement: dict[str, Any]
    warnings: list[str]


class CallRecord(CallInfo):
    """render.json of a deployment call: its CallInfo and the one output."""

    output: str
    kind: str  # video | image
    artifacts: list[Artifact]
