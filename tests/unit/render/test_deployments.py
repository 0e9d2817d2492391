"""Deployments: prompt templates (seed 004's aigc_config), the status read from warm beats,
the inputs a deployment's mode takes, and a deployment's pipeline loaded once and rendering
two calls from first + last frames (tiny Wan FLF2V, CPU)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from loraforge.library.deployments import (
    STALE_S,
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    PromptSettings,
    WarmBeat,
    fill_prompt,
    parse_spec,
    view_of,
)
from loraforge.render.warm import (
    DeploymentRenderer,
    PreparedCall,
    check_call_inputs,
    describe_image,
)
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.params import DeploymentCallParams

from .test_lora_weight import make_lora

pytestmark = pytest.mark.timeout(180)

LORA_TEXT = "then the s86b5p money rain starts and bills pour down around the subject"


def test_template_is_filled_with_description_trigger_and_lora_prompt() -> None:
    settings = PromptSettings(
        template="The video opens on {description}. {lora_prompt} ({trigger})",
        lora_prompt_default=LORA_TEXT,
    )
    prompt, how = fill_prompt(settings, trigger="s86b5p", description="a woman on a beach ")
    assert how == "template"
    assert prompt == f"The video opens on a woman on a beach. {LORA_TEXT} (s86b5p)"


def test_input_prompt_is_used_only_when_asked_and_given() -> None:
    settings = PromptSettings(lora_prompt_default=LORA_TEXT, use_input_prompt=True)
    assert fill_prompt(settings, trigger="t", call_prompt="my own words") == (
        "my own words",
        "input",
    )
    # nothing else required: no prompt given -> the template
    assert fill_prompt(settings, trigger="t", description="a cat")[1] == "template"
    off = PromptSettings(lora_prompt_default=LORA_TEXT)
    assert fill_prompt(off, trigger="t", call_prompt="ignored", description="a cat") == (
        f"a cat {LORA_TEXT}",
        "template",
    )


def test_seed_004_instruction_without_slots_gives_description_then_effect_text() -> None:
    """Seed 004's aigc_config.prompt is an instruction to a captioning model (no slot): the
    prompt is what its output template produces, description + the fixed effect text."""
    instruction = "根据图像内容提供视频描述,描述必须包含“然后她开始了s86b5p变身。”"
    settings = PromptSettings(template=instruction, lora_prompt_default="然后她开始了s86b5p变身。")
    assert settings.needs_description
    assert (
        fill_prompt(settings, trigger="s86b5p", description="一位年轻女性在户外")[0]
        == "一位年轻女性在户外 然后她开始了s86b5p变身。"
    )


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (
            {"lora": "fx:1", "prompt": {"template": "{subject} {lora_prompt}"}},
            "unknown slot(s) {subject}",
        ),
        ({"lora": "fx:1", "prompt": {"template": "a { b"}}, "literal braces"),
        ({"lora": "fx:1", "defaults": {"frames": 10}}, "4k+1"),
        ({"lora": "fx:1", "defaults": {"width": 100}}, "multiple of 16"),
        ({"lora": "fx:1", "capacity": 0}, "capacity"),
        ({"lora": "fx:1", "name": "Bad_Name"}, "name"),
        ({"lora": "fx:1", "plan": "lora"}, "plan"),  # unknown fields are refused, not dropped
    ],
)
def test_bad_specs_are_refused_naming_the_field(data: dict, needle: str) -> None:
    with pytest.raises(InvalidInput, match=r"invalid deployment") as err:
        parse_spec(data)
    assert needle in str(err.value)


def _record(variant: str = "flf2v", **kw) -> Deployment:
    spec = DeploymentSpec(
        lora="fx:1",
        defaults={"width": 64, "height": 64, "frames": 5, "fps": 8, "steps": 1},
        prompt=PromptSettings(
            template="{description}. {lora_prompt}", lora_prompt_default=LORA_TEXT
        ),
    )
    return Deployment(
        name="fx-ft",
        tenant="acme",
        project="fx",
        spec=spec,
        lora_key="acme/fx/x.safetensors",
        lora_ref="fx:1",
        preset=f"tiny-wan2.1-{variant}",
        family="wan",
        variant=variant,
        trigger="s86b5p",
        strength=0.8,
        lora_type="effect",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        **kw,
    )


def test_status_comes_from_fresh_beats() -> None:
    record, now = _record(), 1_000_000.0

    def beat(age, **kw):
        return WarmBeat(
            worker=f"w{age}",
            ready=kw.pop("ready", True),
            beat_at=now - age,
            created_at=record.created_at,
            **kw,
        )

    assert view_of(record, [], now=now).status is DeploymentStatus.PENDING
    running = view_of(record, [beat(1), beat(2)], now=now)
    assert (running.status, running.warm_workers, running.capacity) == (
        DeploymentStatus.RUNNING,
        2,
        1,
    )
    stale = view_of(record, [beat(STALE_S + 1)], now=now)
    assert stale.status is DeploymentStatus.PENDING and "last beat" in stale.message
    failed = view_of(record, [beat(1, ready=False, error="could not load: no weights")], now=now)
    assert failed.status is DeploymentStatus.FAILED and "no weights" in failed.message
    # a beat of an earlier deployment of the same name does not count
    old = WarmBeat(worker="w", ready=True, beat_at=now, created_at=datetime(2025, 1, 1, tzinfo=UTC))
    assert view_of(record, [old], now=now).status is DeploymentStatus.PENDING
    stopped = record.model_copy(update={"state": DeploymentStatus.STOPPED})
    assert view_of(stopped, [beat(1)], now=now).status is DeploymentStatus.STOPPED


@pytest.mark.parametrize(
    ("variant", "image", "last", "needle"),
    [
        ("flf2v", "a.png", "", "pass both image and last_image"),
        ("i2v", "", "", "pass image"),
        ("i2v", "a.png", "b.png", "first frame only"),
        ("t2v", "a.png", "", "takes no input image"),
    ],
)
def test_a_call_gets_the_images_its_mode_needs(variant, image, last, needle) -> None:
    params = DeploymentCallParams(deployment="fx-ft", image=image, last_image=last)
    with pytest.raises(InvalidInput, match=needle):
        check_call_inputs(_record(variant), params)


def _frames(path: Path) -> list[np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]


def test_a_loaded_deployment_renders_calls_from_first_and_last_frame(tmp_path: Path) -> None:
    from skimage import data

    lora = make_lora("tiny-wan2.1-flf2v", tmp_path / "fx.safetensors")
    renderer = DeploymentRenderer(_record(), lora)
    renderer.load()
    assert renderer.placement["device"] == "cpu" and renderer.load_s > 0
    pipe = renderer._pipe
    first_path, last_path = tmp_path / "first.png", tmp_path / "last.png"
    Image.fromarray(data.astronaut()).save(first_path)
    Image.fromarray(data.chelsea()).save(last_path)
    first, last = renderer.fit(first_path), renderer.fit(last_path)
    description, by, warning = describe_image(first_path, "attributes", None)
    assert description.startswith("a scene") and (by, warning) == ("attributes", "")
    for n in range(2):  # the same placed pipeline serves every call
        steps = []
        out = renderer.render(
            PreparedCall(prompt=f"{description}. {LORA_TEXT}", seed=n, first=first, last=last),
            tmp_path / f"out{n}",
            progress=lambda f, m, steps=steps: steps.append(m),
            cancelled=lambda: False,
        )
        assert renderer._pipe is pipe and steps == ["step 1/1"]
        frames = _frames(out)
        assert len(frames) == 5 and frames[0].shape == (64, 64, 3)
        for got, want in ((frames[0], first), (frames[-1], last)):
            # H.264 at crf 18 keeps a pinned frame within a few levels
            assert np.abs(got.astype(int) - np.asarray(want).astype(int)).mean() < 6
        assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 20
    renderer.release()


class _Chat(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint (an external service): answers with a description."""

    bodies: ClassVar[list[dict]] = []  # every request the endpoint received

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Chat.bodies.append(body)
        out = json.dumps(
            {"choices": [{"message": {"content": "An astronaut in a white suit. "}}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


def test_the_description_comes_from_the_chat_model_and_falls_back_to_attributes(
    tmp_path: Path,
) -> None:
    from skimage import data

    from loraforge.runtime.settings import CaptioningSettings

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = tmp_path / "first.png"
        Image.fromarray(data.astronaut()).save(path)
        settings = CaptioningSettings(
            openai_url=f"http://127.0.0.1:{server.server_port}/v1", openai_model="qwen-vl"
        )
        text, by, warning = describe_image(path, "openai", settings)
        assert (text, by, warning) == ("An astronaut in a white suit", "openai", "")
        content = _Chat.bodies[-1]["messages"][-1]["content"]
        assert any(part["type"] == "image_url" for part in content)  # the image was sent
        # not provisioned on this worker: attributes, saying why
        text, by, warning = describe_image(path, "vlm", CaptioningSettings())
        assert by == "attributes" and "LORAFORGE_CAPTIONING__VLM_DIR" in warning
    finally:
        server.shutdown()
