"""Source (c): an OpenAI-compatible chat-completions endpoint with image input.

Frames go inline as base64 JPEG data URLs (no upload step, works with vLLM, Ollama, LM Studio
and hosted APIs alike). Transient failures (connection errors, 408/429/5xx) are retried with
exponential back-off by tenacity; anything else fails at once with the server's message.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
from PIL import Image
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from loraforge.captioning.slots import phrases_to_slots
from loraforge.captioning.sources import ClipInput, Draft, frames_of
from loraforge.captioning.sources.vlm import DEFAULT_PROMPT
from loraforge.runtime.errors import InvalidInput, Unavailable

SYSTEM = (
    "You write training captions for a video model. Describe only what is visible, as "
    "short comma-separated phrases, with no uncertainty words."
)


class _Transient(Exception):
    pass


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, (_Transient, httpx.TransportError))


def image_data_url(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


class OpenAIChatSource:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        frames: int = 4,
        prompt: str = DEFAULT_PROMPT,
        timeout_s: float = 60.0,
        attempts: int = 4,
        backoff_s: float = 1.0,
        client: httpx.Client | None = None,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.frames, self.prompt = model, frames, prompt
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(timeout=timeout_s, headers=headers)
        self._attempts, self._backoff = attempts, backoff_s

    def request_body(self, images: list[Image.Image]) -> dict[str, Any]:
        content: list[dict[str, Any]] = [{"type": "text", "text": self.prompt}]
        content += [{"type": "image_url", "image_url": {"url": image_data_url(i)}} for i in images]
        return {
            "model": self.model,
            "temperature": 0,
            "max_tokens": 200,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": content},
            ],
        }

    def complete(self, images: list[Image.Image]) -> str:
        body = self.request_body(images)

        @retry(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff, max=30),
            reraise=True,
        )
        def call() -> httpx.Response:
            resp = self._client.post(self.url, json=body)
            if resp.status_code in (408, 429) or resp.status_code >= 500:
                raise _Transient(f"HTTP {resp.status_code}: {resp.text[:200]}")
            return resp

        try:
            resp = call()
        except (_Transient, httpx.TransportError) as exc:
            raise Unavailable(
                f"chat endpoint {self.url} failed {self._attempts} times: {exc}"
            ) from None
        if resp.status_code != 200:
            raise InvalidInput(
                f"chat endpoint {self.url} refused the request "
                f"(HTTP {resp.status_code}): {resp.text[:300]}"
            )
        try:
            content = resp.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise Unavailable(
                f"chat endpoint {self.url} answered without choices[0].message.content"
            ) from None
        if isinstance(content, list):  # some servers answer with content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content or "").strip()

    def describe(self, clip: ClipInput) -> Draft:
        images = frames_of(clip, self.frames)
        if not images:
            raise InvalidInput(f"clip {clip.clip_id}: no frames to send to the chat model")
        text = self.complete(images)
        return Draft(self.name, phrases_to_slots(text), text)

    def close(self) -> None:
        self._client.close()
