"""Seed 004's request rules without media: the validation split, n_epochs -> steps and the
800-step minimum with its numbers, preset/mode matching, the trigger found in the prompts,
and usage from a finished run's numbers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from loraforge.library import finetunes, layout
from loraforge.library.finetunes import FileRecord, FinetuneCreate, detect_trigger, plan_finetune
from loraforge.runtime.errors import InvalidInput
from loraforge.runtime.keys import ProjectRef

REF = ProjectRef("acme", "fine-tunes")


def _file(store, n: int, mode: str = "kf2v", file_id: str = "file-1", ds: str = "ft-aaaa") -> None:
    store.put_json(
        "datasets",
        f"acme/fine-tunes/datasets/{ds}/dataset.json",
        {
            "id": ds,
            "lora_type": "effect",
            "selected": [
                {"clip_id": f"sample-{i:03d}", "key": f"acme/fine-tunes/clips/x/{i}.mp4"}
                for i in range(1, n + 1)
            ],
        },
    )
    from loraforge.captioning.review import CaptionRecord, CaptionReviewStore, CaptionVersion

    review = CaptionReviewStore(store, REF, ds)
    for i in range(1, n + 1):
        cid = f"sample-{i:03d}"
        store.put_json(
            "datasets",
            review.key(cid),
            CaptionRecord(
                clip_id=cid,
                dataset_id=ds,
                versions=[CaptionVersion(text=f"prompt {i} s86b5p", author="user:t")],
            ).model_dump(mode="json"),
        )
    rec = FileRecord(
        file_id=file_id,
        name="z.zip",
        purpose="fine-tune",
        sha256="0" * 64,
        size=1,
        mode=mode,
        samples=n,
        dataset_id=ds,
        trigger="s86b5p",
        zip_key="acme/fine-tunes/fine-tune-files/x.zip",
    )
    store.put_json("datasets", layout.ft_file_key(REF, file_id), rec.model_dump(mode="json"))


def _req(**hp) -> FinetuneCreate:
    return FinetuneCreate(
        model="wan2.1-flf2v-14b", training_file_ids=["file-1"], hyper_parameters=hp
    )


def test_seed004_numbers(mem_store) -> None:
    # seed 004's example: 100 samples, split 0.9, max 5 -> 5 validate; batch 4 -> 24 steps an
    # epoch; 400 epochs -> 9600 steps; eval every 20 epochs = 480 steps
    _file(mem_store, 100)
    plan = plan_finetune(mem_store, REF, _req(batch_size=4, max_split_val_dataset_sample=5))
    assert (
        len(plan.validation_clips),
        plan.train_samples,
        plan.steps_per_epoch,
        plan.steps,
        plan.eval_every,
    ) == (5, 95, 24, 9600, 480)
    assert plan.resolution == 512 and plan.trigger == "s86b5p"
    extra = plan.training_extra(_req().hyper_parameters)
    assert extra["validation_clips"] == plan.validation_clips and extra["eval_every"] == 480
    # seed 004: each checkpoint previews the validation samples' prompts
    assert extra["eval_prompts"] == [f"prompt {i} s86b5p" for i in (1, 21, 41, 61, 81)]
    assert extra["eval_previews"] == 5


def test_under_800_steps_is_refused_with_the_numbers(mem_store) -> None:
    _file(mem_store, 5)  # seed 004's example: 5 samples, batch 2 -> 3 steps an epoch
    with pytest.raises(
        InvalidInput,
        match=r"100 epochs x ceil\(4 training samples / batch_size "
        r"2\) = 200 steps, under the 800-step minimum.*n_epochs >= 400",
    ):
        plan_finetune(mem_store, REF, _req(n_epochs=100))
    # tiny presets (random weights) are exempt
    tiny = FinetuneCreate(
        model="tiny-wan2.1-flf2v", training_file_ids=["file-1"], hyper_parameters={"n_epochs": 2}
    )
    assert plan_finetune(mem_store, REF, tiny).steps == 4


def test_model_must_fit_the_zip_kind(mem_store) -> None:
    _file(mem_store, 20, mode="i2v")
    with pytest.raises(InvalidInput, match=r"the i2v zip.*wan2\.1-i2v-14b"):
        plan_finetune(mem_store, REF, _req())
    with pytest.raises(InvalidInput, match="no such preset"):
        plan_finetune(
            mem_store, REF, FinetuneCreate(model="wan2.5-i2v-preview", training_file_ids=["file-1"])
        )
    with pytest.raises(InvalidInput, match="not found; upload it"):
        plan_finetune(
            mem_store, REF, FinetuneCreate(model="wan2.1-i2v-14b", training_file_ids=["file-9"])
        )
    with pytest.raises(InvalidInput, match="validation zip is not supported"):
        plan_finetune(
            mem_store,
            REF,
            FinetuneCreate(
                model="wan2.1-i2v-14b", training_file_ids=["file-1"], validation_file_ids=["v"]
            ),
        )


@pytest.mark.parametrize(
    "hp",
    [
        {"n_epoch": 400},
        {"learning_rate": 0.5},
        {"split": 0},
        {"max_pixels": 4096 * 4096},
        {"batch_size": 0},
    ],
)
def test_unknown_and_out_of_range_hyper_parameters(hp) -> None:
    with pytest.raises(ValidationError):
        _req(**hp)
    with pytest.raises(ValidationError):
        FinetuneCreate(model="x", training_file_ids=["f"], training_type="sft")


def test_trigger_is_the_rare_token_every_prompt_carries() -> None:
    prompts = [
        "视频开头展示了一位女性。然后她开始了s86b5p变身。",
        "视频开头展示了一只猫 in a garden。然后她开始了s86b5p变身。",
    ]
    assert detect_trigger(prompts) == "s86b5p"
    assert detect_trigger(["a woman dancing", "a man dancing"]) == ""


def test_usage_counts_latent_tokens_from_the_run() -> None:
    record = {
        "steps": 800,
        "training_args": {"batch_size": 2, "resolution": "480x832", "frames": 81},
    }
    # 81 frames -> 21 latent frames; 480 x 832 / 256 = 1560 tokens a frame
    assert finetunes.usage_tokens(record) == 800 * 2 * 21 * 1560
    assert finetunes.usage_tokens(None) is None


def test_finetuned_output_resolves_once_the_run_finished(mem_store) -> None:
    from tests.unit.library.conftest import write_run

    from loraforge.library import Library

    job = finetunes.FinetuneJob(
        job_id="j0123abcd",
        model="tiny-wan2.1-flf2v",
        finetuned_output=finetunes.finetuned_output("j0123abcd"),
        training_file_ids=["file-1"],
        hyper_parameters={},
        dataset_id="ft-aaaa",
        steps=8,
        train_samples=9,
        validation_samples=1,
    )
    finetunes.save_job(mem_store, REF, job)
    lib = Library(mem_store, REF)
    with pytest.raises(Exception, match="no LoRA named 'ft-j0123abcd'"):
        lib.resolve("ft-j0123abcd")  # not finished yet
    write_run(mem_store, run_id="j0123abcd", tenant="acme", project="fine-tunes")
    v = lib.resolve("ft-j0123abcd")
    assert (v.version, v.chosen, v.step) == (1, "automatic", 4)
    assert lib.resolve("ft-j0123abcd:1").ref == "ft-j0123abcd:1"
    assert lib.version_numbers("ft-j0123abcd") == [1]


def test_the_plans_options_survive_the_wire(mem_store) -> None:
    """The extra goes through StartTraining's protobuf Struct (every number a double) and
    must still be what the trainer's RunConfig and evaluation settings take."""
    from google.protobuf import json_format

    from loraforge.runtime.servicers import struct_from_dict
    from loraforge.trainer.run.options import validate_extra

    _file(mem_store, 10)
    plan = plan_finetune(mem_store, REF, _req(n_epochs=800, batch_size=9, eval_epochs=200))
    wired = json_format.MessageToDict(
        struct_from_dict(plan.training_extra(_req().hyper_parameters))
    )
    settings, options = validate_extra(wired)
    assert settings.previews == 1 and settings.prompts == ("prompt 1 s86b5p",)
    assert options["eval_every"] == 200.0 and "validation_clips" not in options
