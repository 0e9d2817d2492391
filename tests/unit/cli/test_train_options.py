"""`loraforge train --set KEY=VALUE`: values are JSON where they parse, text otherwise."""

from __future__ import annotations

import pytest

from loraforge.cli.train_cmd import parse_options
from loraforge.runtime.errors import InvalidInput


def test_values_are_json_else_text() -> None:
    assert parse_options(
        [
            "block_swap=20",
            "fp8_base=true",
            "expert=high",
            "flow_shift=3.5",
            'target_modules=["to_q", "to_k"]',
            "trigger=a=b",
        ]
    ) == {
        "block_swap": 20,
        "fp8_base": True,
        "expert": "high",
        "flow_shift": 3.5,
        "target_modules": ["to_q", "to_k"],
        "trigger": "a=b",
    }


@pytest.mark.parametrize("bad", ["block_swap", "=3", " =x"])
def test_malformed_option_says_the_form(bad: str) -> None:
    with pytest.raises(InvalidInput, match="expected KEY=VALUE"):
        parse_options([bad])
