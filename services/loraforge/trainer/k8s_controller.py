"""Training runs as Kubernetes Jobs: the shared controller (loraforge.runtime.k8s_controller)
for Jobs of kind "train" (``loraforge-train-<run_id>``, container ``train``)."""

from __future__ import annotations

from loraforge.runtime.k8s_controller import (
    LOG_WINDOW_MARGIN_S,
    GpuJobController,
    JobStatus,
    LogCursor,
)

__all__ = ["LOG_WINDOW_MARGIN_S", "JobStatus", "LogCursor", "TrainingJobController"]


class TrainingJobController(GpuJobController):
    kind = "train"
