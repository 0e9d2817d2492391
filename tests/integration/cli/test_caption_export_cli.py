"""`loraforge caption` and `loraforge export` against the in-process captioning service, real
NATS and the test S3 server: caption, review, re-run, export, read back."""

from __future__ import annotations

import asyncio
import json
import zipfile

from loraforge.captioning.exports import read
from loraforge.captioning.exports.wan import recommend_epochs
from loraforge.captioning.review import CaptionReviewStore
from loraforge.runtime.keys import ProjectRef
from loraforge.stack.binaries import free_port

from .seed import PROJECT, TENANT, TRIGGER, seed_dataset

REF = ProjectRef(TENANT, PROJECT)
SMALL, FULL = "ds-z-small", "ds-a-full"  # FULL is newer; by name alone SMALL would win
EDITED = f"{TRIGGER}, woman, red scarf, laughing, front view"
P = ("--project", PROJECT, "--tenant", TENANT)


def _ok(res) -> dict | str:
    assert res.exit_code == 0, res.output
    return res.stdout


async def test_caption_review_rerun_and_export(
    local_clips, cli, cli_process, store, tmp_path, monkeypatch
):
    await asyncio.to_thread(seed_dataset, store, SMALL, local_clips[:3])
    await asyncio.sleep(1.1)  # S3 modification times have one-second resolution
    await asyncio.to_thread(seed_dataset, store, FULL, local_clips)

    # a common word is refused locally, with the reason, before any job starts
    bad = await cli("caption", *P, "--trigger", "fire", "--json")
    assert bad.exit_code == 2
    error = json.loads(bad.stdout)["error"]
    assert "'fire' is not a rare token" in error and "common English word" in error
    bad = await cli("caption", *P, "--trigger", "red fire")
    assert bad.exit_code == 2 and "no spaces" in bad.output
    assert CaptionReviewStore(store, REF, FULL).list() == []

    # caption the newest dataset (no --dataset): every caption starts with the trigger
    out = json.loads(
        _ok(await cli("caption", *P, "--trigger", TRIGGER, "--class-noun", "woman", "--json"))
    )
    assert out["state"] == "SUCCEEDED" and out["dataset_id"] == FULL
    assert [c["clip_id"] for c in out["captions"]] == [c.clip_id for c in local_clips]
    assert all(c["text"].startswith(f"{TRIGGER}, woman") for c in out["captions"]), out["captions"]
    assert out["written"] == len(local_clips) and out["kept"] == 0
    by_id = {c["clip_id"]: c["text"] for c in out["captions"]}
    assert "profile view" in by_id["clip-01"] and "front view" in by_id["clip-00"]
    assert CaptionReviewStore(store, REF, FULL).texts() == by_id

    # review (interim: straight to the store): an edit must keep the trigger; a good one sticks
    bad = await cli("caption", "edit", *P, "clip-00", "a woman laughing")
    assert bad.exit_code == 2 and TRIGGER in bad.output
    edit = json.loads(
        _ok(
            await cli(
                "caption",
                "edit",
                *P,
                "--dataset",
                FULL,
                "clip-00",
                EDITED,
                "--approve",
                "--user",
                "ann",
                "--json",
            )
        )
    )
    assert edit["text"] == EDITED and edit["approved"] and edit["author"] == "user:ann"
    _ok(await cli("caption", "approve", *P, "clip-02", "--user", "bob"))

    # a re-run keeps the edit and the approval; the human view shows both
    text = _ok(await cli("caption", *P, "--trigger", TRIGGER, "--class-noun", "woman"))
    assert "red scarf" in text and "approved" in text and f"dataset {FULL}" in text
    assert "0 new" in text and f"{len(local_clips)} kept" in text
    review = CaptionReviewStore(store, REF, FULL)
    assert review.texts()["clip-00"] == EDITED and review.get("clip-02").approved_by == "bob"

    # exports run ffmpeg, so as their own process (see conftest.cli_process)
    # seed export: the current captions (the edit included), read back
    seed = json.loads(
        _ok(
            await cli_process(
                "export", *P, "--format", "seed", "--out", str(tmp_path / "seed"), "--json"
            )
        )
    )
    assert seed["validated"] == len(local_clips) and seed["dataset_id"] == FULL
    back = read("seed", tmp_path / "seed")
    assert sorted(t for _, t in back) == sorted(review.texts().values())
    meta = json.loads((tmp_path / "seed" / "dataset" / "metadata.json").read_text())
    assert meta["trigger"] == TRIGGER
    assert {c["clip_id"]: c["caption"] for c in meta["clips"]}["clip-00"] == EDITED

    # kohya: the trigger comes from the captioning run; images + captions read back
    _ok(
        await cli_process(
            "export",
            *P,
            "--format",
            "kohya",
            "--out",
            str(tmp_path / "kohya"),
            "--class-noun",
            "woman",
        )
    )
    back = read("kohya", tmp_path / "kohya")
    assert len(back) == len(local_clips) and all(t.startswith(TRIGGER) for _, t in back)
    assert (tmp_path / "kohya" / "img" / f"19_{TRIGGER} woman").is_dir()

    # Wan i2v zip: 11 samples pass the minimum; the step rule is reported
    wan = _ok(
        await cli_process("export", *P, "--format", "wan-i2v-zip", "--out", str(tmp_path / "wan"))
    )
    zip_path = tmp_path / "wan" / "wan-i2v-training-dataset.zip"
    assert str(zip_path) in wan.replace("\n", "")
    flat = " ".join(wan.split())
    assert f"n_epochs to at least {recommend_epochs(len(local_clips), 2)}" in flat
    assert f"read back and checked: {len(local_clips)}" in flat
    # (the zip's reader decodes the videos: done by the command in its own process; decoding
    # here, in the process that hosts the gRPC service, trips on the fork noted in conftest)
    with zipfile.ZipFile(zip_path) as zf:
        lines = [json.loads(line) for line in zf.read("data.jsonl").decode().splitlines()]
        names = set(zf.namelist())
    assert len(lines) == len(local_clips) and EDITED in {x["prompt"] for x in lines}
    assert all(x["prompt"].startswith(TRIGGER) for x in lines)
    assert all({x["video_path"], x["first_frame_path"]} <= names for x in lines)

    # a dataset below the Wan minimum is refused naming the rule (and writes nothing)
    _ok(await cli("caption", *P, "--dataset", SMALL, "--trigger", TRIGGER, "--json"))
    small = await cli_process(
        "export",
        *P,
        "--dataset",
        SMALL,
        "--format",
        "wan-i2v-zip",
        "--out",
        str(tmp_path / "small"),
    )
    assert small.exit_code == 2, small.output
    assert "min_samples" in small.output and "at least 10" in small.output
    assert not (tmp_path / "small" / "wan-i2v-training-dataset.zip").exists()
    small = await cli_process(
        "export",
        *P,
        "--dataset",
        SMALL,
        "--format",
        "wan-i2v-zip",
        "--out",
        str(tmp_path / "small"),
        "--json",
    )
    assert small.exit_code == 2 and json.loads(small.stdout)["rule"] == "min_samples"

    # an export into a folder that is not empty is refused too (no mixing with old files)
    again = await cli_process("export", *P, "--format", "seed", "--out", str(tmp_path / "seed"))
    assert again.exit_code == 2 and "empty_output" in again.output

    # the service down: exit 1 saying how to start it
    monkeypatch.setenv("LORAFORGE_ENDPOINTS__CAPTIONING", f"127.0.0.1:{free_port()}")
    down = await cli("caption", *P, "--trigger", TRIGGER, "--json")
    assert down.exit_code == 1 and "loraforge stack up" in json.loads(down.stdout)["error"]


async def test_caption_and_export_without_a_dataset(cli, store, tmp_path):
    """A project with no curated dataset: both commands say to curate first (exit 2)."""
    res = await cli("caption", *P, "--trigger", TRIGGER)
    assert res.exit_code == 2 and "no curated dataset" in res.output
    res = await cli("export", *P, "--format", "seed", "--out", str(tmp_path / "x"), "--json")
    assert res.exit_code == 2 and "no curated dataset" in json.loads(res.stdout)["error"]
