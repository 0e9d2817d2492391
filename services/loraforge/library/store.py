"""The LoRA library of one tenant's project, in the object store (layout.py).

Rules (each enforced here, whichever transport calls it):
- A version is `<name>:<n>`, n = 1, 2, ... per name. It points at a finished training run
  (its `run.json`) and one of its checkpoints: the run's automatic pick (`best`) unless the
  caller names another one, and then a reason is required and recorded (`chosen: user`).
- Versions are immutable: the files are copied to content-addressed blobs before the record
  is written (the record is the commit marker), and a record is never rewritten.
- Aliases (`latest`, `prod`, any non-numeric slug) point at a version and can be moved; the
  history of an alias is kept in its record. `latest` moves to each new version.
- A version used by a deployment (a record under `deployments/` naming it) cannot be
  deleted; the refusal names the deployments.
- Everything is under the caller's `<tenant>/<project>/`: another tenant's names do not
  exist for it (NotFound, 404 at the gateway).

Concurrency: two registrations of the same name may race for the same number; the record
carries a nonce, the writer reads it back and, when another writer's record is there, takes
the next number (the window between the existence check and the read-back is small; two
writers landing in it both see the later record and one retries).
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loraforge.library import layout
from loraforge.library.records import (
    LATEST,
    Alias,
    AliasMove,
    CheckpointInfo,
    LoraFile,
    LoraVersion,
    parse_checkpoint,
    parse_spec,
)
from loraforge.runtime.errors import Conflict, InvalidInput, NotFound
from loraforge.runtime.keys import ProjectRef
from loraforge.runtime.storage import ObjectStore

B = layout.BUCKET
#: the file name stem the trainer exports with (RunConfig.name's default) and the expert tags
#: of Wan 2.2 A14B (trainer/wan.py: output_files); the high-noise file is the main one
EXPORT_STEM = "lora"
MAIN_EXPERT = "high_noise"
ALIAS_HISTORY = 20
FINETUNE_PREFIX = "ft-"  # library names of hosted fine-tunes (finetunes.finetuned_output)
_REGISTER_TRIES = 5


class Library:
    def __init__(self, store: ObjectStore, ref: ProjectRef):
        self.store = store
        self.ref = ref

    # ------------------------------------------------------------------ reading runs

    def run_record(self, run_id: str) -> dict[str, Any]:
        key = layout.run_record_key(self.ref, run_id)
        if self.store.stat(B, key) is None:
            raise NotFound(
                f"training run {run_id!r} has no finished record in project "
                f"{self.ref.project!r} (it does not exist, or has not succeeded yet: "
                "wait for it to finish)"
            )
        record: dict[str, Any] = self.store.get_json(B, key)
        return record

    def _step_exports(self, run_id: str, step: int) -> dict[str, str]:
        """role -> key of the LoRA files the trainer exported at a checkpoint step (the
        family's file layout, beside the resume state)."""
        prefix = f"{layout.run_prefix(self.ref, run_id)}/checkpoints/step-{step}/"
        out: dict[str, str] = {}
        for obj in self.store.list(B, prefix):
            name = obj.key[len(prefix) :]
            if (
                "/" in name
                or not name.startswith(EXPORT_STEM + ".")
                or not name.endswith(".safetensors")
            ):
                continue
            parts = name.split(".")
            tag = parts[1] if len(parts) == 3 else ""
            out["main" if tag in ("", MAIN_EXPERT) else tag] = obj.key
        return out

    def checkpoints(self, run_id: str) -> list[CheckpointInfo]:
        """Every checkpoint of a finished run, with its scores and whether it can be promoted."""
        record = self.run_record(run_id)
        best, last = int(record.get("best_step") or record["steps"]), int(record["steps"])
        steps = {int(s) for s in (record.get("checkpoints") or {})} | {best, last}
        ev = record.get("evaluation") or {}
        rows = {int(r["step"]): r for r in ev.get("checkpoints") or [] if "step" in r}
        losses = {
            int(k): v for k, v in ((record.get("metrics") or {}).get("eval_losses") or {}).items()
        }
        previews = {int(k): v for k, v in (ev.get("previews") or {}).items()}
        out = []
        for step in sorted(steps):
            files = self._files_of(record, run_id, step)
            row = rows.get(step, {})
            out.append(
                CheckpointInfo(
                    step=step,
                    name=f"step-{step}",
                    automatic_pick=step == best,
                    last=step == last,
                    promotable=bool(files),
                    why_not=""
                    if files
                    else (
                        "this checkpoint has only its training state, no exported LoRA file (the "
                        "run predates per-checkpoint exports); promote best or last"
                    ),
                    val_loss=row.get("val_loss", losses.get(step)),
                    likeness=row.get("likeness"),
                    previews=list(previews.get(step, [])),
                    files=files,
                )
            )
        return out

    def _files_of(self, record: dict[str, Any], run_id: str, step: int) -> dict[str, str]:
        files = record.get("files") or {}
        for which, at in (("best", record.get("best_step")), ("last", record.get("steps"))):
            if at is not None and int(at) == step and files.get(which):
                return self._roles(files[which])
        return self._step_exports(run_id, step)

    @staticmethod
    def _roles(by_attr: dict[str, str]) -> dict[str, str]:
        """run.json `files.best` ({denoiser attribute: key}, first = main) -> role -> key."""
        out = {}
        for i, key in enumerate(by_attr.values()):
            parts = key.rsplit("/", 1)[-1].split(".")
            out["main" if i == 0 else (parts[1] if len(parts) == 3 else f"file{i}")] = key
        return out

    # ------------------------------------------------------------------ versions

    def register(
        self,
        run_id: str,
        name: str,
        *,
        checkpoint: str | int | None = None,
        reason: str = "",
        by: str = "",
        only_first: bool = False,
    ) -> LoraVersion:
        """A new immutable version `<name>:<n>` from a finished run's checkpoint.
        `only_first`: make version 1 unless the name has one (then return it): a name that
        a fine-tune reserved, registered by whichever reader sees the run finished first."""
        layout.validate_name(name)
        record = self.run_record(run_id)
        pick = parse_checkpoint(checkpoint)
        best, last = int(record.get("best_step") or record["steps"]), int(record["steps"])
        if pick is None or pick == "best":
            step = best
        elif pick == "last":
            step = last
        else:
            step = pick
        automatic = step == best
        reason = (reason or "").strip()
        if not automatic and not reason:
            raise InvalidInput(
                f"step {step} is not the run's automatic pick (step {best}: "
                f"{record.get('best_reason') or 'the evaluation chose it'}); say why you "
                "promote this one instead (a reason is recorded with the version)"
            )
        info = {c.step: c for c in self.checkpoints(run_id)}
        if step not in info:
            raise NotFound(
                f"run {run_id} has no checkpoint at step {step}; its checkpoints "
                f"are {', '.join(f'step-{s}' for s in sorted(info))}"
            )
        if not info[step].promotable:
            raise InvalidInput(f"step {step} of run {run_id}: {info[step].why_not}")
        files = self._copy_files(info[step].files)
        if automatic and not reason:
            reason = f"the run's automatic pick: {record.get('best_reason') or 'best step'}"
        version = LoraVersion(
            name=name,
            version=1,
            tenant=self.ref.tenant,
            project=self.ref.project,
            run_id=run_id,
            checkpoint=f"step-{step}",
            step=step,
            chosen="automatic" if automatic else "user",
            reason=reason,
            files=files,
            base_preset=record.get("base_preset", ""),
            family=record.get("family", ""),
            lora_type=str(record.get("lora_type") or ""),
            trigger=record.get("trigger") or "",
            recommended_strength=record.get("recommended_weight"),
            strength_reason=record.get("strength_reason") or "",
            dataset_id=record.get("dataset_id") or "",
            dataset_hash=record.get("dataset_hash") or "",
            training=dict(record.get("training_args") or {}),
            scores=self._scores(record, step),
            created_by=by,
        )
        return self._commit_version(version, only_first)

    def _commit_version(self, version: LoraVersion, only_first: bool = False) -> LoraVersion:
        for _ in range(_REGISTER_TRIES):
            n = max(self.version_numbers(version.name), default=0) + 1
            if only_first and n > 1:
                return self.get(version.name, 1)
            v = version.model_copy(update={"version": n, "nonce": secrets.token_hex(8)})
            key = layout.version_key(self.ref, v.name, n)
            if self.store.stat(B, key) is not None:
                continue
            self.store.put_json(B, key, v.model_dump(mode="json"))
            if self.store.get_json(B, key).get("nonce") == v.nonce:
                self._move_alias(v.name, LATEST, n, by=v.created_by)
                return v
            if only_first:  # another reader registered it first: the same run, the same pick
                return self.get(version.name, 1)
        raise Conflict(
            f"could not register a version of {version.name!r}: other registrations "
            "kept taking the next number; retry"
        )

    @staticmethod
    def _scores(record: dict[str, Any], step: int) -> dict[str, Any]:
        ev = record.get("evaluation") or {}
        row: dict[str, Any] = next(
            (r for r in ev.get("checkpoints") or [] if int(r.get("step", -1)) == step), {}
        )
        losses = (record.get("metrics") or {}).get("eval_losses") or {}
        out = {k: v for k, v in row.items() if k != "step"}
        if str(step) in losses:
            out.setdefault("val_loss", losses[str(step)])
        out["basis"] = ev.get("basis") or ("validation loss" if losses else "final step")
        out["automatic_pick_step"] = record.get("best_step")
        out["automatic_pick_reason"] = record.get("best_reason")
        if record.get("report_key"):
            out["report_key"] = record["report_key"]
        return out

    def _copy_files(self, files: dict[str, str]) -> list[LoraFile]:
        """Each run file -> a content-addressed blob of this project (put-if-absent)."""
        out = []
        with tempfile.TemporaryDirectory(prefix="lf-library-") as tmp:
            for role, key in sorted(files.items(), key=lambda kv: kv[0] != "main"):
                if not key.startswith(self.ref.prefix):
                    raise InvalidInput(f"{key} is not a file of project {self.ref.project}")
                path = self.store.download(B, key, Path(tmp) / f"{role}.safetensors")
                digest = _sha256(path)
                blob = layout.blob_key(self.ref, digest)
                stored, _ = self.store.put_if_absent_file(
                    B, blob, path, sha256=digest, content_type="application/octet-stream"
                )
                out.append(
                    LoraFile(role=role, key=blob, sha256=digest, size=stored.size, source_key=key)
                )
        return out

    def version_numbers(self, name: str) -> list[int]:
        prefix = layout.versions_prefix(self.ref, name)
        out = []
        for obj in self.store.list(B, prefix):
            stem = obj.key[len(prefix) :].removesuffix(".json")
            if stem.isdigit() and obj.key.endswith(".json"):
                out.append(int(stem))
        return sorted(out)

    def get(self, name: str, version: int) -> LoraVersion:
        key = layout.version_key(self.ref, name, version)
        if self.store.stat(B, key) is None:
            known = self.version_numbers(name)
            raise NotFound(
                f"LoRA {name}:{version} not found"
                + (
                    f"; {name} has versions {', '.join(map(str, known))}"
                    if known
                    else f"; there is no LoRA named {name!r} in project {self.ref.project!r}"
                )
            )
        return LoraVersion.model_validate(self.store.get_json(B, key))

    def resolve(self, spec: str) -> LoraVersion:
        """`name`, `name:<n>` or `name:<alias>` -> the version (no tag: `latest`)."""
        name, version, alias = parse_spec(spec)
        if name.startswith(FINETUNE_PREFIX) and not self.version_numbers(name):
            self._finetune_output(name)
        if version is None:
            version = self.alias(name, alias or LATEST).version
        return self.get(name, version)

    def _finetune_output(self, name: str) -> None:
        """A hosted fine-tune's `finetuned_output` (`ft-<job id>`) gets its version 1 when
        first asked for after the run succeeded."""
        job_id = name.removeprefix(FINETUNE_PREFIX)
        if self.store.stat(B, layout.ft_job_key(self.ref, job_id)) is not None:
            self.finetune_output(job_id, name)

    def finetune_output(self, job_id: str, name: str) -> LoraVersion | None:
        """Fine-tune `job_id`'s LoRA `name` (finetunes.finetuned_output): version 1 = the
        run's automatic pick, registered once the run has finished; None while it has not.
        Here, not in finetunes.py, so that resolving an `ft-` name needs no import of it."""
        if self.version_numbers(name):
            return self.resolve(name)
        if self.store.stat(B, layout.run_record_key(self.ref, job_id)) is None:
            return None
        return self.register(job_id, name, by=f"fine-tune:{job_id}", only_first=True)

    def versions(self, name: str) -> list[LoraVersion]:
        return [self.get(name, n) for n in self.version_numbers(name)]

    def names(self) -> list[str]:
        prefix = layout.library_prefix(self.ref)
        found = set()
        for obj in self.store.list(B, prefix):
            parts = obj.key[len(prefix) :].split("/")
            if len(parts) == 3 and parts[1] == "versions" and not parts[0].startswith("_"):
                found.add(parts[0])
        return sorted(found)

    def summary(self, name: str) -> dict[str, Any]:
        """A name's versions (newest first) and aliases."""
        versions = self.versions(name)
        if not versions:
            raise NotFound(f"there is no LoRA named {name!r} in project {self.ref.project!r}")
        aliases = {a.alias: a.version for a in self.aliases(name)}
        return {
            "name": name,
            "aliases": aliases,
            "versions": [v.public() for v in reversed(versions)],
        }

    def delete(self, name: str, version: int, *, by: str = "") -> dict[str, Any]:
        """Remove a version no deployment uses: its record, the aliases on it (`latest`
        moves back to the newest remaining version), and blobs no other version shares."""
        v = self.get(name, version)
        users = self.in_use(name, version)
        if users:
            raise Conflict(
                f"{v.ref} is used by deployment(s) {', '.join(users)}; delete or "
                "re-point them first"
            )
        self.store.delete(B, layout.version_key(self.ref, name, version))
        removed, moved = [], None
        for a in self.aliases(name):
            if a.version != version:
                continue
            if a.alias == LATEST:
                remaining = self.version_numbers(name)
                if remaining:
                    self._move_alias(name, LATEST, remaining[-1], by=by)
                    moved = remaining[-1]
                    continue
            self.store.delete(B, layout.alias_key(self.ref, name, a.alias))
            removed.append(a.alias)
        shared = {f.sha256 for other in self._all_versions() for f in other.files}
        freed = [f.key for f in v.files if f.sha256 not in shared]
        for key in freed:
            self.store.delete(B, key)
        return {
            "deleted": v.ref,
            "aliases_removed": removed,
            "latest_now": moved,
            "blobs_freed": len(freed),
        }

    def _all_versions(self) -> Iterable[LoraVersion]:
        for name in self.names():
            yield from self.versions(name)

    # ------------------------------------------------------------------ aliases

    def aliases(self, name: str) -> list[Alias]:
        prefix = layout.aliases_prefix(self.ref, name)
        return [
            Alias.model_validate(self.store.get_json(B, o.key))
            for o in self.store.list(B, prefix)
            if o.key.endswith(".json")
        ]

    def alias(self, name: str, alias: str) -> Alias:
        key = layout.alias_key(self.ref, name, alias)
        if self.store.stat(B, key) is None:
            if not self.version_numbers(name):
                raise NotFound(f"there is no LoRA named {name!r} in project {self.ref.project!r}")
            raise NotFound(
                f"{name} has no alias {alias!r}; its aliases are "
                f"{', '.join(sorted(a.alias for a in self.aliases(name))) or 'none'}"
            )
        return Alias.model_validate(self.store.get_json(B, key))

    def tag(self, name: str, version: int, alias: str, *, by: str = "") -> Alias:
        """Point `alias` at an existing version (moving it if it points elsewhere)."""
        layout.validate_alias(alias)
        self.get(name, version)
        return self._move_alias(name, alias, version, by=by)

    def untag(self, name: str, alias: str) -> None:
        if alias == LATEST:
            raise InvalidInput(
                "`latest` always exists while the name has versions; move it with tag instead"
            )
        self.alias(name, alias)
        self.store.delete(B, layout.alias_key(self.ref, name, alias))

    def _move_alias(self, name: str, alias: str, version: int, *, by: str) -> Alias:
        key = layout.alias_key(self.ref, name, alias)
        old = (
            Alias.model_validate(self.store.get_json(B, key))
            if self.store.stat(B, key) is not None
            else None
        )
        history = list(old.history) if old else []
        if old is not None and old.version != version:
            history.append(AliasMove(version=old.version, moved_at=old.moved_at, by=old.by))
        new = Alias(
            name=name, alias=alias, version=version, by=by, history=history[-ALIAS_HISTORY:]
        )
        self.store.put_json(B, key, new.model_dump(mode="json"))
        return new

    # ------------------------------------------------------------------ deployments

    def in_use(self, name: str, version: int) -> list[str]:
        """Names of the deployments whose record (layout.deployment_key) serves this version."""
        prefix = layout.deployments_prefix(self.ref)
        users = []
        for obj in self.store.list(B, prefix):
            rest = obj.key[len(prefix) :]
            if "/" in rest or not rest.endswith(".json"):
                continue
            try:
                rec = self.store.get_json(B, obj.key)
            except NotFound:  # deleted between the listing and the read
                continue
            lora = rec.get("lora") if isinstance(rec, dict) else None
            if (
                isinstance(lora, dict)
                and lora.get("name") == name
                and int(lora.get("version") or 0) == version
            ):
                users.append(rec.get("name") or rest.removesuffix(".json"))
        return sorted(users)


def in_use(store: ObjectStore, tenant: str, project: str, name: str, version: int) -> list[str]:
    """The deployments using `name:version` (what deletion checks)."""
    return Library(store, ProjectRef(tenant, project)).in_use(name, version)


def usage_ref(version: LoraVersion) -> dict[str, Any]:
    """What a deployment record carries under `lora` so `in_use` finds it."""
    return {"name": version.name, "version": version.version}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
