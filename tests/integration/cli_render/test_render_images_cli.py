"""`loraforge render` with the user's own keyframe as a local file: checked here, uploaded to the
project's raw bucket (content-addressed, like any upload), rendered as an I2V video; a file
that is not an image is refused before anything is submitted."""

from __future__ import annotations

import hashlib
import json

from PIL import Image

from loraforge.runtime.storage import Bucket

I2V = """
video_preset: tiny-wan2.1-i2v
pairing: each
output: {width: 64, height: 64}
steps: 1
transition: {frames: 5, fps: 8}
shots:
  - {prompt: "a cat looks around", image: IMAGE}
"""


async def test_local_keyframe_is_uploaded_and_rendered(cli, store, tmp_path):
    import skimage.data

    photo = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()).save(photo)
    scen = tmp_path / "i2v.yaml"
    scen.write_text(I2V.replace("IMAGE", "cat.png"))  # relative to the scenario file
    res = await cli(
        "render", str(scen), "--project", "jane", "--tenant", "acme", "--json", "--no-links"
    )
    assert res.exit_code == 0, res.output
    view = json.loads(res.stdout)
    assert view["state"] == "SUCCEEDED", view
    assert len(view["transitions"]) == 1 and not view["keyframes"][0].endswith(".mp4")
    key = f"acme/jane/sources/{hashlib.sha256(photo.read_bytes()).hexdigest()}.png"
    assert store.stat(Bucket.RAW, key) is not None
    record = store.get_json(Bucket.RENDERS, f"acme/jane/renders/{view['job_id']}/render.json")
    assert record["scenario"]["shots"][0]["image"] == key

    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    scen.write_text(I2V.replace("IMAGE", str(notes)))
    res = await cli("render", str(scen), "--project", "jane", "--tenant", "acme")
    assert res.exit_code == 2 and "not an image" in res.output
