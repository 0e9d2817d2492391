"""The library's rules on a finished run: automatic pick by default, any checkpoint with a
reason, immutable copies, movable aliases, deletion refused while deployed, tenants apart."""

from __future__ import annotations

import pytest
from tests.unit.library.conftest import PROJECT, RUN, TENANT, write_run

from loraforge.library import Library, in_use, layout, parse_spec, usage_ref
from loraforge.library.records import parse_checkpoint
from loraforge.runtime.errors import Conflict, InvalidInput, NotFound
from loraforge.runtime.keys import ProjectRef

REF = ProjectRef(TENANT, PROJECT)


def test_register_takes_the_automatic_pick_and_copies_its_file(mem_store) -> None:
    write_run(mem_store)
    lib = Library(mem_store, REF)
    v = lib.register(RUN, "money-rain", by="key:k1")
    assert (v.ref, v.step, v.chosen, v.checkpoint) == ("money-rain:1", 4, "automatic", "step-4")
    assert "lowest validation loss at step 4" in v.reason
    assert (v.base_preset, v.family, v.trigger, v.recommended_strength) == (
        "tiny-wan2.1-flf2v",
        "wan",
        "s86b5p",
        0.9,
    )
    assert v.scores["val_loss"] == 0.3 and v.scores["automatic_pick_step"] == 4
    assert v.lora_key.startswith(f"{TENANT}/{PROJECT}/library/_blobs/")
    assert mem_store.get_bytes("loras", v.lora_key) == b"comfy-step-4"
    assert lib.alias("money-rain", "latest").version == 1
    assert lib.resolve("money-rain").ref == "money-rain:1"


def test_a_user_pick_needs_a_reason_and_records_it(mem_store) -> None:
    write_run(mem_store)
    lib = Library(mem_store, REF)
    with pytest.raises(InvalidInput, match=r"not the run's automatic pick.*step 4"):
        lib.register(RUN, "money-rain", checkpoint="step-6")
    v = lib.register(RUN, "money-rain", checkpoint="step-6", reason="previews: cleaner bills")
    assert (v.step, v.chosen, v.reason) == (6, "user", "previews: cleaner bills")
    assert mem_store.get_bytes("loras", v.lora_key) == b"comfy-step-6"
    last = lib.register(RUN, "money-rain", checkpoint="last", reason="most trained")
    assert (last.version, last.step) == (2, 8)
    assert lib.resolve("money-rain").version == 2


def test_checkpoints_without_an_export_or_unknown_are_refused_with_the_list(mem_store) -> None:
    write_run(mem_store)
    lib = Library(mem_store, REF)
    cps = {c.step: c for c in lib.checkpoints(RUN)}
    assert sorted(cps) == [2, 4, 6, 8]
    assert cps[4].automatic_pick and cps[8].last and not cps[2].promotable
    assert cps[6].previews and cps[6].val_loss == 0.35
    with pytest.raises(InvalidInput, match="no exported LoRA file"):
        lib.register(RUN, "x", checkpoint=2, reason="r")
    with pytest.raises(NotFound, match="step-2, step-4, step-6, step-8"):
        lib.register(RUN, "x", checkpoint=3, reason="r")
    with pytest.raises(NotFound, match="has not succeeded yet"):
        lib.register("run-missing", "x")


def test_versions_are_immutable_copies(mem_store) -> None:
    write_run(mem_store)
    lib = Library(mem_store, REF)
    v = lib.register(RUN, "money-rain")
    # the run's files change afterwards (a re-run into the same folder, a manual upload)
    mem_store.put_bytes("loras", f"{TENANT}/{PROJECT}/runs/{RUN}/best.safetensors", b"changed")
    assert mem_store.get_bytes("loras", lib.resolve("money-rain:1").lora_key) == b"comfy-step-4"
    # the same checkpoint again: a new version sharing the blob
    again = lib.register(RUN, "money-rain", checkpoint="step-4")
    assert again.version == 2 and again.lora_key != v.lora_key  # changed bytes: new blob
    assert again.files[0].sha256 != v.files[0].sha256


def test_aliases_move_and_keep_their_history(mem_store) -> None:
    write_run(mem_store)
    lib = Library(mem_store, REF)
    lib.register(RUN, "money-rain")
    lib.register(RUN, "money-rain", checkpoint=6, reason="r")
    lib.tag("money-rain", 1, "prod", by="alice")
    assert lib.resolve("money-rain:prod").version == 1
    moved = lib.tag("money-rain", 2, "prod", by="bob")
    assert moved.version == 2 and [h.version for h in moved.history] == [1]
    assert lib.resolve("money-rain:1").version == 1
    with pytest.raises(NotFound, match="versions 1, 2"):
        lib.tag("money-rain", 7, "prod")
    with pytest.raises(InvalidInput, match="is a number"):
        lib.tag("money-rain", 1, "42")
    with pytest.raises(NotFound, match="no alias 'staging'"):
        lib.resolve("money-rain:staging")
    lib.untag("money-rain", "prod")
    assert {a.alias for a in lib.aliases("money-rain")} == {"latest"}


def test_delete_is_refused_while_a_deployment_uses_the_version(mem_store) -> None:
    write_run(mem_store)
    lib = Library(mem_store, REF)
    v1 = lib.register(RUN, "money-rain")
    v2 = lib.register(RUN, "money-rain", checkpoint=6, reason="r")
    mem_store.put_json(
        "loras",
        layout.deployment_key(REF, "rain-prod"),
        {"name": "rain-prod", "lora": usage_ref(v2)},
    )
    assert in_use(mem_store, TENANT, PROJECT, "money-rain", 2) == ["rain-prod"]
    with pytest.raises(Conflict, match=r"used by deployment.*rain-prod"):
        lib.delete("money-rain", 2)
    mem_store.delete("loras", layout.deployment_key(REF, "rain-prod"))
    out = lib.delete("money-rain", 2)
    assert out["latest_now"] == 1 and out["blobs_freed"] == 1
    assert mem_store.stat("loras", v2.lora_key) is None
    assert mem_store.stat("loras", v1.lora_key) is not None
    with pytest.raises(NotFound):
        lib.get("money-rain", 2)
    assert lib.register(RUN, "money-rain").version == 2  # numbers continue from what exists


def test_another_tenant_sees_nothing(mem_store) -> None:
    write_run(mem_store)
    Library(mem_store, REF).register(RUN, "money-rain")
    other = Library(mem_store, ProjectRef("globex", PROJECT))
    assert other.names() == []
    for call in (
        lambda: other.resolve("money-rain"),
        lambda: other.get("money-rain", 1),
        lambda: other.register(RUN, "mine"),
        lambda: other.checkpoints(RUN),
    ):
        with pytest.raises(NotFound):
            call()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("money-rain", ("money-rain", None, "latest")),
        ("money-rain:3", ("money-rain", 3, None)),
        ("money-rain:prod", ("money-rain", None, "prod")),
    ],
)
def test_parse_spec(spec, expected) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "Money", "a:", "a:b:c", "../x", "a:Prod"])
def test_parse_spec_refuses(spec) -> None:
    with pytest.raises(InvalidInput, match="NAME:VERSION"):
        parse_spec(spec)


def test_parse_checkpoint() -> None:
    assert [parse_checkpoint(v) for v in (None, "best", "last", "step-6", "6", 6)] == [
        None,
        "best",
        "last",
        6,
        6,
        6,
    ]
    for bad in ("step-x", "0", "newest"):
        with pytest.raises(InvalidInput):
            parse_checkpoint(bad)


def test_a_deployment_of_a_run_checkpoint_takes_its_exported_file(mem_store) -> None:
    from loraforge.library.deployments import resolve_lora

    write_run(mem_store)
    picked = resolve_lora(mem_store, REF, f"run:{RUN}@step-6")
    assert mem_store.get_bytes("loras", picked.key) == b"comfy-step-6"  # not the raw adapter
    assert (
        mem_store.get_bytes("loras", resolve_lora(mem_store, REF, f"run:{RUN}").key)
        == b"comfy-step-4"
    )
    with pytest.raises(InvalidInput, match="no exported LoRA file"):
        resolve_lora(mem_store, REF, f"run:{RUN}@2")
    with pytest.raises(NotFound, match="step-2, step-4, step-6, step-8"):
        resolve_lora(mem_store, REF, f"run:{RUN}@step-3")
