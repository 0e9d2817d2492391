"""Caption templates: format strings over named slots, one template per LoRA type.

The language is Python's `str.format` field syntax restricted to bare slot names, so a
template is readable in YAML/JSON and cannot reach attributes or indexes:

    character:
      parts: ["{trigger}", "{class_noun}", "{hair}", "wearing {clothing}", ...]
      separator: ", "
      shared: []          # slots with one value for the whole dataset (effect: [motion])
      exclude: [...]      # slots never filled (identity traits)
      trigger_first: true

A part whose slots are all empty is dropped, so "wearing {clothing}" disappears when nothing
is known about clothing. Defaults ship in data/templates.json; users override per type with
their own YAML or JSON (file, text or dict).
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from loraforge.captioning.errors import InvalidTemplate
from loraforge.captioning.text import tidy
from loraforge.runtime.params import LoraType

# Every slot a source can fill. Unknown names in a user template are refused: they would
# never be filled and the part would silently vanish.
SLOTS = frozenset(
    {
        "trigger",
        "class_noun",
        "subject",
        "hair",
        "clothing",
        "action",
        "expression",
        "angle",
        "shot",
        "environment",
        "background",
        "lighting",
        "colors",
        "motion",
        "pose",
        "details",
        "face_shape",
        "eye_color",
        "skin_color",
    }
)


@dataclass(frozen=True)
class CaptionTemplate:
    lora_type: str
    parts: tuple[str, ...]
    separator: str = ", "
    shared: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    trigger_first: bool = True
    _fields: tuple[tuple[str, ...], ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def from_dict(cls, lora_type: str, doc: Mapping[str, Any]) -> CaptionTemplate:
        if isinstance(doc, list):  # shorthand: just the parts
            doc = {"parts": doc}
        if (
            not isinstance(doc, Mapping)
            or not isinstance(doc.get("parts"), list)
            or not doc["parts"]
        ):
            raise InvalidTemplate(f"template {lora_type!r}: needs a non-empty list 'parts'")
        unknown_keys = set(doc) - {"parts", "separator", "shared", "exclude", "trigger_first"}
        if unknown_keys:
            raise InvalidTemplate(f"template {lora_type!r}: unknown keys {sorted(unknown_keys)}")
        fields = []
        for part in doc["parts"]:
            if not isinstance(part, str):
                raise InvalidTemplate(f"template {lora_type!r}: part {part!r} is not a string")
            fields.append(tuple(_fields_of(lora_type, part)))
        used = [f for fs in fields for f in fs]
        if used.count("trigger") != 1:
            raise InvalidTemplate(
                f"template {lora_type!r}: use {{trigger}} exactly once "
                f"(found {used.count('trigger')})"
            )
        t = cls(
            lora_type=lora_type,
            parts=tuple(doc["parts"]),
            separator=str(doc.get("separator", ", ")),
            shared=tuple(doc.get("shared", ())),
            exclude=tuple(doc.get("exclude", ())),
            trigger_first=bool(doc.get("trigger_first", True)),
            _fields=tuple(fields),
        )
        for name in (*t.shared, *t.exclude):
            if name not in SLOTS:
                raise InvalidTemplate(
                    f"template {lora_type!r}: unknown slot {name!r} in shared/exclude"
                )
        if t.trigger_first and "trigger" not in fields[0]:
            raise InvalidTemplate(
                f"template {lora_type!r}: trigger_first needs {{trigger}} in the first part"
            )
        return t

    @property
    def slots(self) -> set[str]:
        return {f for fs in self._fields for f in fs}

    def render(self, values: Mapping[str, str]) -> str:
        clean = {k: tidy(str(v)) for k, v in values.items() if v and k not in self.exclude}
        if not clean.get("trigger"):
            raise InvalidTemplate("a caption needs the trigger word")
        out = []
        for part, names in zip(self.parts, self._fields, strict=True):
            if names and not all(clean.get(n) for n in names):
                continue  # a part with an unknown value says nothing: drop it whole
            out.append(part.format(**{n: clean[n] for n in names}))
        return self.separator.join(p for p in out if p.strip())

    def to_dict(self) -> dict[str, Any]:
        return {
            "parts": list(self.parts),
            "separator": self.separator,
            "shared": list(self.shared),
            "exclude": list(self.exclude),
            "trigger_first": self.trigger_first,
        }


def _fields_of(lora_type: str, part: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(part))
    except ValueError as exc:
        raise InvalidTemplate(f"template {lora_type!r}: part {part!r}: {exc}") from None
    names = []
    for _lit, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise InvalidTemplate(
                f"template {lora_type!r}: {{{name}}} in {part!r}: use bare slot "
                "names like {clothing}, no attributes, indexes or formats"
            )
        if name not in SLOTS:
            raise InvalidTemplate(
                f"template {lora_type!r}: unknown slot {{{name}}} in {part!r}; "
                f"known slots: {', '.join(sorted(SLOTS))}"
            )
        names.append(name)
    return names


def default_templates() -> dict[str, CaptionTemplate]:
    text = (
        resources.files("loraforge.captioning")
        .joinpath("data", "templates.json")
        .read_text("utf-8")
    )
    doc = json.loads(text)
    return {k: CaptionTemplate.from_dict(k, v) for k, v in doc.items() if not k.startswith("_")}


def load_templates(
    user: str | Path | Mapping[str, Any] | None = None,
) -> dict[str, CaptionTemplate]:
    """Defaults, overridden per LoRA type by the user's templates (a dict, a YAML/JSON file, or
    YAML/JSON text)."""
    templates = default_templates()
    if user is None:
        return templates
    if isinstance(user, Path) or (
        isinstance(user, str) and "\n" not in user and Path(user).is_file()
    ):
        user = Path(user).read_text("utf-8")
    if isinstance(user, str):
        try:
            user = yaml.safe_load(user)  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise InvalidTemplate(f"templates are not valid YAML/JSON: {exc}") from None
    if not isinstance(user, Mapping):
        raise InvalidTemplate("templates must be a mapping of LoRA type -> template")
    for key, value in user.items():
        if key.startswith("_"):
            continue
        if key not in {t.value for t in LoraType}:
            raise InvalidTemplate(
                f"unknown LoRA type {key!r} in templates; use one of "
                f"{', '.join(t.value for t in LoraType)}"
            )
        templates[key] = CaptionTemplate.from_dict(key, value)
    return templates
