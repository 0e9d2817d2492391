"""The LoRA library: named, versioned LoRAs per tenant/project (`<name>:<version>`).

Public interface (used by the gateway, the CLI and the deployments store):

- `Library(store, ProjectRef(tenant, project))` (store.py)
    .register(run_id, name, checkpoint=None|"best"|"last"|"step-N"|N, reason="", by="")
        -> LoraVersion: a new immutable version from a finished run (its run.json); the
        automatic pick by default, any checkpoint with a recorded reason
    .resolve("name" | "name:3" | "name:prod") -> LoraVersion  (no tag: alias `latest`)
    .get(name, n), .versions(name), .names(), .summary(name)
    .tag(name, n, alias), .untag(name, alias), .aliases(name), .alias(name, alias)
    .delete(name, n)  (Conflict while a deployment uses it)
    .in_use(name, n) -> [deployment names]   .checkpoints(run_id) -> [CheckpointInfo]
- `in_use(store, tenant, project, name, version)` and `usage_ref(version)`: a deployment
  record at `layout.deployment_key(ref, deployment)` (bucket `loras`) carrying
  `{"name": <deployment>, "lora": usage_ref(version), ...}` makes the version undeletable.
- `LoraVersion` (records.py): name, version, ref ("name:n"), run_id, checkpoint ("step-N"),
  step, chosen ("automatic" | "user"), reason, files ([LoraFile]; `lora_key` = the main
  file's key in `loras`, what a render's LoraWeight.lora_key takes), base_preset, family,
  lora_type, trigger, recommended_strength, dataset_id, dataset_hash, training, scores.
- `layout` (layout.py): every key the library and deployments use.
- `finetunes` (finetunes.py): seed 004's hosted fine-tuning surface (dataset zips, jobs).

Unknown names, versions, aliases and another tenant's anything are `NotFound`.
"""

from loraforge.library.records import CheckpointInfo, LoraFile, LoraVersion, parse_spec
from loraforge.library.store import Library, in_use, usage_ref

__all__ = [
    "CheckpointInfo",
    "Library",
    "LoraFile",
    "LoraVersion",
    "in_use",
    "parse_spec",
    "usage_ref",
]
