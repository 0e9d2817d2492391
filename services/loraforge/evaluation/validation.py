"""Validation-loss bookkeeping: held-out denoising loss per checkpoint step.

The trainer computes the number (its own model, noise scheduler and held-out latents); we only
store it. It is comparable across steps only if every evaluation uses the SAME held-out samples,
noise (seed) and timesteps, so those are recorded with each point and ``ValidationLog`` refuses
a point measured under a different protocol than the first one. Training loss is useless for
choosing a checkpoint (it falls while the LoRA overfits); a held-out loss that turns back up is
an overfitting hint next to the render-based collapse score.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loraforge.runtime.errors import InvalidInput


@dataclass(frozen=True)
class ValidationRecord:
    step: int
    loss: float  # mean denoising loss over the held-out samples x timesteps
    timesteps: tuple[int, ...]  # the fixed timesteps evaluated
    noise_seed: int  # the fixed noise
    n_samples: int  # held-out samples
    per_timestep: dict[int, float] = field(default_factory=dict)  # optional breakdown

    def protocol(self) -> tuple[Any, ...]:
        return (tuple(self.timesteps), self.noise_seed, self.n_samples)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["timesteps"] = list(self.timesteps)
        d["per_timestep"] = {str(k): v for k, v in self.per_timestep.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ValidationRecord:
        return cls(
            int(d["step"]),
            float(d["loss"]),
            tuple(int(t) for t in d["timesteps"]),
            int(d["noise_seed"]),
            int(d["n_samples"]),
            {int(k): float(v) for k, v in (d.get("per_timestep") or {}).items()},
        )


class ValidationLog:
    """Records by step (re-recording a step replaces it), optionally appended to a JSONL file
    so that a resumed training run keeps its history."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._by_step: dict[int, ValidationRecord] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    r = ValidationRecord.from_json(json.loads(line))
                    self._by_step[r.step] = r

    def record(self, rec: ValidationRecord) -> None:
        first = next(iter(self._by_step.values()), None)
        if first is not None and first.protocol() != rec.protocol():
            raise InvalidInput(
                f"validation at step {rec.step} used timesteps/seed/samples {rec.protocol()} but "
                f"earlier steps used {first.protocol()}; losses would not be comparable"
            )
        self._by_step[rec.step] = rec
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write(json.dumps(rec.to_json()) + "\n")

    @property
    def records(self) -> list[ValidationRecord]:
        return [self._by_step[s] for s in sorted(self._by_step)]

    def loss_at(self, step: int) -> float | None:
        r = self._by_step.get(step)
        return None if r is None else r.loss

    def series(self) -> tuple[list[int], list[float]]:
        recs = self.records
        return [r.step for r in recs], [r.loss for r in recs]

    def best_step(self) -> int | None:
        """Lowest loss; the earlier step on a tie."""
        recs = self.records
        return min(recs, key=lambda r: (r.loss, r.step)).step if recs else None
