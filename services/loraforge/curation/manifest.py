"""The curation manifest: every clip with its metrics, decision and reasons, as Parquet + JSON.

One flat row per clip so that the Parquet file can be queried directly (DuckDB, pandas);
list-valued fields (reasons, landmarks, embedding) stay lists, not JSON strings.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from loraforge.curation.layout import MANIFEST

if TYPE_CHECKING:
    from loraforge.curation.pipeline import CurationResult

MANIFEST_VERSION = 1


def rows(result: CurationResult) -> list[dict[str, Any]]:
    out = []
    for c in result.clips:
        row = asdict(c.metrics)
        # dedup's comparison signal, kilobytes of bytes: not for readers
        del row["signature"], row["signature_fps"]
        row.update(
            decision="keep" if c.decision.keep else "reject",
            selected=c.selected,
            reason_codes=c.decision.reason_codes,
            reasons=[r.message for r in c.decision.reasons],
            flag_codes=c.decision.flag_codes,
            flags=[r.message for r in c.decision.flags],
            # where each reason or flag was seen (box as x/y/w/h fractions, frames, text read)
            evidence=[
                {"code": r.code, **e}
                for r in [*c.decision.reasons, *c.decision.flags]
                for e in getattr(r, "evidence", ())
            ],
        )
        build = getattr(result, "build", None)  # the type's dataset builder, when it ran
        if build:
            cid = c.metrics.clip_id
            row.update(
                derived_items=[i["item_id"] for i in build["items"] if i["clip_id"] == cid],
                build_dropped_codes=[d["code"] for d in build["dropped"] if d["clip_id"] == cid],
                build_dropped=[d["message"] for d in build["dropped"] if d["clip_id"] == cid],
            )
        out.append(row)
    return out


def write_manifest(result: CurationResult, out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = rows(result)
    pq_path = out_dir / "manifest.parquet"
    table = pa.Table.from_pylist(data) if data else pa.table({"clip_id": pa.array([], pa.string())})
    table = table.replace_schema_metadata(
        {"loraforge.curation.manifest_version": str(MANIFEST_VERSION)}
    )
    pq.write_table(table, pq_path)
    json_path = out_dir / MANIFEST  # uploaded as the dataset's layout.manifest_key
    sel = result.selection
    doc = {
        "version": MANIFEST_VERSION,
        "lora_type": result.policy.lora_type,
        "policy_hash": result.policy.policy_hash,
        "policy": result.policy.model_dump(),
        "backend": result.backend,
        "selection": {
            "selected": sel.selected,
            "target_size": sel.target_size,
            "minimum_size": sel.minimum_size,
            "angle_quota": sel.angle_quota,
            "angle_counts": sel.angle_counts,
            "missing": [m.message for m in sel.missing],
        },
        "rejection_counts": result.rejection_counts(),
        # the type's dataset builder: items (derived files + evidence), drops, clusters
        **({"build": result.build} if getattr(result, "build", None) else {}),
        "clips": data,
    }
    json_path.write_text(json.dumps(doc, indent=1, sort_keys=False))
    return pq_path, json_path
