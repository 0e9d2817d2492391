from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from loraforge.captioning.captioner import CaptionOptions, caption_clips
from loraforge.captioning.sources import AttributeSource, ClipInput
from loraforge.captioning.sources.openai_chat import OpenAIChatSource
from loraforge.runtime.errors import InvalidInput, Unavailable

CHAT_ANSWER = (
    "The video shows a woman who appears to be smiling, possibly in a sunny park. "
    "She has green eyes and curly blond hair, wearing a yellow raincoat."
)


class ChatStub:
    """A real HTTP server on a free loopback port speaking the chat-completions shape."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)  # status per call; the last one repeats
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body})
                stub.headers.append(dict(self.headers))
                status = stub.statuses.pop(0) if len(stub.statuses) > 1 else stub.statuses[0]
                payload = (
                    {
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": CHAT_ANSWER}}
                        ]
                    }
                    if status == 200
                    else {"error": {"message": "overloaded"}}
                )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_openai_chat_source_retries_and_feeds_the_template(clips: list[Path]) -> None:
    with ChatStub([503, 429, 200]) as stub:
        source = OpenAIChatSource(stub.url, "qwen-vl", api_key="sk-test", frames=3, backoff_s=0.01)
        run = caption_clips(
            [ClipInput("c1", media=clips[0], metrics={"angle_bucket": "frontal"})],
            [AttributeSource(), source],
            CaptionOptions("ohwx_woman", class_noun="woman"),
        )
    assert len(stub.requests) == 3  # two transient failures retried
    req = stub.requests[-1]
    assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "qwen-vl"
    assert stub.headers[-1]["Authorization"] == "Bearer sk-test"
    images = [p for p in req["body"]["messages"][1]["content"] if p["type"] == "image_url"]
    assert len(images) == 3
    url = images[0]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
        assert im.size == (128, 128)  # a real frame of the clip
    text = run.captions[0].text
    assert text.startswith("ohwx_woman, woman, curly blond hair, wearing a yellow raincoat")
    assert "front view" in text and "sunny park" in text
    for banned in ("appears", "possibly", "green eyes"):
        assert banned not in text


def test_openai_chat_source_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    Image.new("RGB", (32, 32), "red").save(tmp_path / "kf.png")
    clip = ClipInput("c1", keyframes=[tmp_path / "kf.png"])
    with ChatStub([500]) as stub, pytest.raises(Unavailable, match="failed 2 times"):
        OpenAIChatSource(stub.url, "m", attempts=2, backoff_s=0.01).describe(clip)
    with ChatStub([400]) as stub:
        with pytest.raises(InvalidInput, match="HTTP 400"):
            OpenAIChatSource(stub.url, "m", backoff_s=0.01).describe(clip)
        assert len(stub.requests) == 1  # a client error is not retried


def test_vlm_source_loads_a_local_model_and_feeds_the_template(
    tmp_path: Path, clips: list[Path]
) -> None:
    pytest.importorskip("transformers")
    from captioning_vlm import build_tiny_blip

    from loraforge.captioning.sources.vlm import VlmSource

    folder = build_tiny_blip(tmp_path / "tiny-blip", favour="jacket")
    source = VlmSource(folder, frames=2, max_new_tokens=6)
    draft = source.describe(ClipInput("c1", media=clips[1]))
    assert isinstance(draft.text, str) and "jacket" in draft.text
    assert draft.slots == {"clothing": "jacket"}  # repeated babble post-processed into one slot
    run = caption_clips(
        [ClipInput("c1", media=clips[1], metrics={"expression": "smiling"})],
        [AttributeSource(), source],
        CaptionOptions("ohwx_woman", class_noun="woman"),
    )
    assert run.captions[0].text == "ohwx_woman, woman, wearing jacket, smiling"
    with pytest.raises(InvalidInput, match="does not exist"):
        VlmSource(tmp_path / "missing")
