"""The scenario's scheduler names -> diffusers schedulers, built from the pipeline's own config
(so the trained noise schedule, prediction type and flow shift are kept; only the sampler
changes).

SD families (epsilon / v prediction): euler, euler_a (ancestral), dpmpp_2m (DPM-Solver++ 2M),
dpmpp_2m_karras (with Karras sigmas), ddim, unipc. Flow-matching models (Wan; Flux only
euler): euler (FlowMatchEuler), unipc and dpmpp_2m in their flow-sigma form, which is how the
Wan reference code samples (UniPC with flow_shift)."""

from __future__ import annotations

from typing import Any

from loraforge.runtime.errors import InvalidInput


def _flow_shift(config: dict[str, Any]) -> float:
    return float(config.get("flow_shift") or config.get("shift") or 1.0)


def set_scheduler(pipe: Any, name: str, *, flow: bool, shift: float | None = None) -> Any:
    """Replace ``pipe.scheduler`` by ``name`` (``default`` keeps its kind); returns the
    pipeline. ``shift`` (flow models): the flow shift instead of the shipped one; Wan's
    authors use 3.0 at 480p and 5.0 at 720p (more steps at high noise for bigger frames)."""
    if name == "default" and shift is None:
        return pipe
    import diffusers

    config = dict(pipe.scheduler.config)
    if name == "default" and shift is not None:  # same scheduler, other shift
        key = "flow_shift" if "flow_shift" in config else "shift"
        pipe.scheduler = type(pipe.scheduler).from_config(config, **{key: float(shift)})
        return pipe
    # scheduler class (diffusers: untyped) and its arguments, by name
    classes: dict[str, tuple[Any, dict[str, Any]]]
    if flow:
        shift = float(shift) if shift is not None else _flow_shift(config)
        flow_sigmas = {
            "prediction_type": "flow_prediction",
            "use_flow_sigmas": True,
            "flow_shift": shift,
            "num_train_timesteps": 1000,
        }
        classes = {
            "euler": (diffusers.FlowMatchEulerDiscreteScheduler, {"shift": shift}),
            "unipc": (diffusers.UniPCMultistepScheduler, flow_sigmas),
            "dpmpp_2m": (
                diffusers.DPMSolverMultistepScheduler,
                {**flow_sigmas, "algorithm_type": "dpmsolver++", "solver_order": 2},
            ),
        }
        if name not in classes:
            raise InvalidInput(
                f"scheduler {name!r} does not sample a flow-matching model; use "
                "euler, unipc or dpmpp_2m"
            )
        cls, arguments = classes[name]
        pipe.scheduler = cls(**arguments)
        return pipe
    classes = {
        "euler": (diffusers.EulerDiscreteScheduler, {}),
        "euler_a": (diffusers.EulerAncestralDiscreteScheduler, {}),
        "dpmpp_2m": (
            diffusers.DPMSolverMultistepScheduler,
            {"algorithm_type": "dpmsolver++", "solver_order": 2},
        ),
        "dpmpp_2m_karras": (
            diffusers.DPMSolverMultistepScheduler,
            {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
        ),
        "ddim": (diffusers.DDIMScheduler, {}),
        "unipc": (diffusers.UniPCMultistepScheduler, {}),
    }
    if name not in classes:
        raise InvalidInput(f"unknown scheduler {name!r}; use one of {', '.join(classes)}")
    cls, extra = classes[name]
    pipe.scheduler = cls.from_config(config, **extra)
    return pipe
