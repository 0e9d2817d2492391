"""Source (b): a vision-language model loaded with transformers from a LOCAL directory.

Any `AutoModelForImageTextToText` checkpoint works (BLIP, LLaVA, Qwen2-VL...). Models with a chat
template get all sampled frames in one user turn; plain captioners (BLIP) caption each frame
and the phrases are merged. Nothing is ever downloaded: `local_files_only=True`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from PIL import Image

from loraforge.captioning.slots import phrases_to_slots
from loraforge.captioning.sources import ClipInput, Draft, frames_of
from loraforge.runtime.errors import InvalidInput

DEFAULT_PROMPT = (
    "Describe the person's hair, clothing, action, expression, the camera angle, "
    "the environment and the lighting in short comma-separated phrases. "
    "State only what is visible."
)


class VlmSource:
    name = "vlm"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        frames: int = 4,
        max_new_tokens: int = 60,
        prompt: str = DEFAULT_PROMPT,
        caption_prefix: str = "",
        device: str = "cpu",
    ):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise InvalidInput(
                f"VLM directory {self.model_dir} does not exist; provision the "
                "model there (no model is downloaded at run time)"
            )
        self.frames, self.max_new_tokens, self.prompt = frames, max_new_tokens, prompt
        self.caption_prefix, self.device = caption_prefix, device
        self._lock = threading.Lock()
        # transformers' model and processor (Any: loaded by Auto classes), once loaded
        self._model: Any = None
        self._processor: Any = None

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                from transformers import AutoModelForImageTextToText, AutoProcessor

                processor: Any = AutoProcessor  # its from_pretrained is untyped
                self._processor = processor.from_pretrained(
                    str(self.model_dir), local_files_only=True
                )
                model: Any = AutoModelForImageTextToText.from_pretrained(
                    str(self.model_dir), local_files_only=True
                )
                self._model = model.to(self.device).eval()
        return self._model, self._processor

    def _chat(self, processor: Any) -> bool:
        return bool(getattr(processor, "chat_template", None))

    def generate(self, images: list[Image.Image]) -> str:
        import torch

        model, processor = self._load()
        with torch.inference_mode():
            if self._chat(processor):
                messages = [
                    {
                        "role": "user",
                        "content": [
                            *({"type": "image"} for _ in images),
                            {"type": "text", "text": self.prompt},
                        ],
                    }
                ]
                prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
                inputs = processor(images=images, text=prompt, return_tensors="pt").to(self.device)
                out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
                new = out[:, inputs["input_ids"].shape[1] :]
                return str(processor.batch_decode(new, skip_special_tokens=True)[0]).strip()
            texts: list[str] = []
            for img in images:  # a plain captioner describes one image at a time
                kwargs = {"text": self.caption_prefix} if self.caption_prefix else {}
                inputs = processor(images=img, return_tensors="pt", **kwargs).to(self.device)
                out = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
                text = processor.batch_decode(out, skip_special_tokens=True)[0].strip()
                if self.caption_prefix and text.lower().startswith(self.caption_prefix.lower()):
                    text = text[len(self.caption_prefix) :].strip()
                if text and text not in texts:
                    texts.append(text)
            return ". ".join(texts)

    def describe(self, clip: ClipInput) -> Draft:
        images = frames_of(clip, self.frames)
        if not images:
            raise InvalidInput(f"clip {clip.clip_id}: no frames to show the VLM")
        text = self.generate(images)
        return Draft(self.name, phrases_to_slots(text), text)
