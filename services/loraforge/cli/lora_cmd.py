"""`loraforge lora list|show|promote|tag|rm|checkpoints`: the project's LoRA library
(loraforge.library). Against the local stack the CLI reads and writes the library in the
object store itself (as `lora pull` does); with `--api URL --key KEY` it calls the gateway's
`/v1/projects/{p}/loras` routes. Both apply the same rules (library/store.py).

A training run is not a release: nothing is added to the library until someone promotes a
run (`loraforge lora promote RUN --name NAME`), by default its automatic pick, or another
checkpoint with `--checkpoint step-N --reason "..."`. The hosted fine-tune API is the one
exception: a fine-tune's `finetuned_output` name gets the automatic pick as version 1 when it
succeeds, because seed 004's users deploy that name directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from loraforge.cli.output import console, emit_json, fail
from loraforge.cli.train_cmd import lora_app

PROJECT = typer.Option(..., "--project", "-p", help="Project of the library.")
TENANT = typer.Option("default", "--tenant", help="Tenant the project belongs to (local stack).")
AS_JSON = typer.Option(False, "--json", help="Print one JSON object.")


def register(app: typer.Typer) -> None:
    """Adds its commands to the `lora` group (train_cmd.lora_app, already on `app`)."""
    del app


def _local(tenant: str, project: str, as_json: bool, fn: Callable[[Any], Any]) -> Any:
    from loraforge.library import Library
    from loraforge.runtime.errors import Conflict, InvalidInput, LoraforgeError, NotFound
    from loraforge.runtime.keys import ProjectRef
    from loraforge.runtime.settings import load_settings
    from loraforge.runtime.storage import ObjectStore

    try:
        lib = Library(ObjectStore.connect(load_settings().s3), ProjectRef(tenant, project))
        return fn(lib)
    except (InvalidInput, NotFound, Conflict) as exc:  # what the caller can fix: exit 2
        fail(str(exc), as_json=as_json, code=2)
    except LoraforgeError as exc:
        fail(str(exc), as_json=as_json)


def _remote(ctx: typer.Context) -> Any:
    from loraforge.cli.remote import remote_of

    return remote_of(ctx)


def _split(ref: str, as_json: bool) -> tuple[str, int | None, str | None]:
    from loraforge.library import parse_spec
    from loraforge.runtime.errors import InvalidInput

    try:
        return parse_spec(ref)
    except InvalidInput as exc:
        fail(str(exc), as_json=as_json, code=2)


def _print_version(v: dict[str, Any]) -> None:
    console.print(
        f"[bold]{v['ref']}[/bold]  {v['base_preset']} ({v.get('family', '')}), "
        f"type {v.get('lora_type') or '-'}, trigger {v.get('trigger') or '-'}"
    )
    console.print(f"  run {v['run_id']} {v['checkpoint']} ({v['chosen']}): {v['reason']}")
    strength = v.get("recommended_strength")
    console.print(
        f"  strength {strength if strength is not None else '-'}; dataset "
        f"{v.get('dataset_id') or '-'}; file {v['lora_key']}"
    )
    scores = {
        k: s
        for k, s in (v.get("scores") or {}).items()
        if k in ("val_loss", "likeness", "basis") and s is not None
    }
    if scores:
        console.print("  scores " + ", ".join(f"{k} {s}" for k, s in scores.items()))


@lora_app.command("list")
def list_(
    ctx: typer.Context, project: str = PROJECT, tenant: str = TENANT, as_json: bool = AS_JSON
) -> None:
    """Every LoRA name of the project with its aliases and versions."""
    remote = _remote(ctx)
    if remote is not None:
        with remote:
            rows = remote.request("GET", f"/v1/projects/{project}/loras", as_json=as_json)["loras"]
    else:
        rows = _local(tenant, project, as_json, lambda lib: [lib.summary(n) for n in lib.names()])
    if as_json:
        emit_json({"loras": rows})
        return
    if not rows:
        console.print(
            f"no LoRAs in {project} yet; promote a run with `loraforge lora promote "
            "RUN --name NAME`"
        )
    for row in rows:
        aliases = ", ".join(f"{a}->{v}" for a, v in sorted(row["aliases"].items()))
        console.print(f"{row['name']}: {len(row['versions'])} version(s); {aliases}")


@lora_app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (all versions), NAME:N or NAME:ALIAS.")],
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """One version (NAME:N, NAME:ALIAS), or a name's versions and aliases (NAME)."""
    name, version, alias = _split(ref, as_json)
    one = ":" in ref
    remote = _remote(ctx)
    if remote is not None:
        with remote:
            path = f"/v1/projects/{project}/loras/{name}"
            out = remote.request(
                "GET", f"{path}/versions/{version or alias}" if one else path, as_json=as_json
            )
    else:
        out = _local(
            tenant,
            project,
            as_json,
            lambda lib: lib.resolve(ref).public() if one else lib.summary(name),
        )
    if as_json:
        emit_json(out)
        return
    if one:
        _print_version(out)
        return
    console.print(
        f"[bold]{name}[/bold] aliases: "
        + ", ".join(f"{a}->{v}" for a, v in sorted(out["aliases"].items()))
    )
    for v in out["versions"]:
        _print_version(v)


@lora_app.command("promote")
def promote(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A succeeded training run (job id).")],
    name: str = typer.Option(..., "--name", help="The LoRA's name in the library."),
    checkpoint: str | None = typer.Option(
        None,
        "--checkpoint",
        help=(
            "best (the run's automatic pick, default), last, or step-N (see `loraforge "
            "lora checkpoints RUN`)."
        ),
    ),
    reason: str = typer.Option(
        "", "--reason", help="Why this checkpoint (required when it is not the automatic pick)."
    ),
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """Add a run's checkpoint to the library as NAME:N (N = the next version); `latest`
    moves to it."""
    remote = _remote(ctx)
    if remote is not None:
        body = {"run_id": run_id, "name": name, "checkpoint": checkpoint, "reason": reason}
        with remote:
            out = remote.request(
                "POST", f"/v1/projects/{project}/loras", json=body, as_json=as_json
            )
    else:
        out = _local(
            tenant,
            project,
            as_json,
            lambda lib: lib.register(
                run_id, name, checkpoint=checkpoint, reason=reason, by="cli"
            ).public(),
        )
    if as_json:
        emit_json(out)
        return
    _print_version(out)


@lora_app.command("tag")
def tag(
    ctx: typer.Context,
    ref: Annotated[
        str,
        typer.Argument(help="NAME:N, the version the alias points at (NAME alone with --remove)."),
    ],
    alias: Annotated[str, typer.Argument(help="Alias: prod, staging, any non-numeric slug.")],
    remove: bool = typer.Option(False, "--remove", help="Delete the alias instead."),
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """Point ALIAS at NAME:N (moving it when it points elsewhere), or remove it."""
    name, version, _ = _split(ref, as_json)
    if not remove and (":" not in ref or version is None):
        fail(f"{ref!r}: name the version to tag, e.g. {name}:3", as_json=as_json, code=2)
    remote = _remote(ctx)
    path = f"/v1/projects/{project}/loras/{name}/aliases/{alias}"
    if remote is not None:
        with remote:
            out = (
                remote.request("DELETE", path, as_json=as_json)
                if remove
                else remote.request("PUT", path, json={"version": version}, as_json=as_json)
            )
    elif remove:
        out = _local(tenant, project, as_json, lambda lib: lib.untag(name, alias))
    else:
        out = _local(
            tenant,
            project,
            as_json,
            lambda lib: lib.tag(name, version, alias, by="cli").model_dump(mode="json"),
        )
    if as_json:
        emit_json(out or {"removed": f"{name}:{alias}"})
        return
    console.print(f"removed {name}:{alias}" if remove else f"{name}:{alias} -> {name}:{version}")


@lora_app.command("rm")
def rm(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:N, the version to delete.")],
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """Delete a version (refused while a deployment uses it)."""
    name, version, _ = _split(ref, as_json)
    if version is None:
        fail(
            f"{ref!r}: name a version number, e.g. {name}:3 (aliases move; versions are "
            "deleted one by one)",
            as_json=as_json,
            code=2,
        )
    remote = _remote(ctx)
    if remote is not None:
        with remote:
            out = remote.request(
                "DELETE", f"/v1/projects/{project}/loras/{name}/versions/{version}", as_json=as_json
            )
    else:
        out = _local(tenant, project, as_json, lambda lib: lib.delete(name, version, by="cli"))
    if as_json:
        emit_json(out)
        return
    console.print(
        f"deleted {out['deleted']}"
        + (f"; latest is now {name}:{out['latest_now']}" if out.get("latest_now") else "")
    )


@lora_app.command("checkpoints")
def checkpoints(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="A succeeded training run (job id).")],
    project: str = PROJECT,
    tenant: str = TENANT,
    as_json: bool = AS_JSON,
) -> None:
    """A run's checkpoints: which one is the automatic pick, their scores, promotable or not."""
    remote = _remote(ctx)
    if remote is not None:
        with remote:
            rows = remote.request(
                "GET", f"/v1/projects/{project}/training-runs/{run_id}/checkpoints", as_json=as_json
            )
    else:
        rows = _local(
            tenant,
            project,
            as_json,
            lambda lib: [c.model_dump(mode="json") for c in lib.checkpoints(run_id)],
        )
    if as_json:
        emit_json({"run_id": run_id, "checkpoints": rows})
        return
    for c in rows:
        marks = " ".join(
            m for m, on in (("automatic pick", c["automatic_pick"]), ("last", c["last"])) if on
        )
        loss = f"val loss {c['val_loss']:.4f}" if c.get("val_loss") is not None else "no val loss"
        console.print(
            f"{c['name']}: {loss}"
            + (f" [{marks}]" if marks else "")
            + ("" if c["promotable"] else f" (not promotable: {c['why_not']})")
        )
