from __future__ import annotations

import pytest
from captioning_tokenizers import tiny_tokenizer

from loraforge.captioning.errors import InvalidTrigger
from loraforge.captioning.trigger import check_trigger, suggest_trigger, validate_trigger
from loraforge.captioning.wordlist import english_words


@pytest.mark.parametrize("trigger", ["ohwx_woman", "s86b5p", "sks_person"])
def test_rare_triggers_pass(trigger: str) -> None:
    assert validate_trigger(trigger) == trigger


@pytest.mark.parametrize("trigger", ["beautiful", "running", "fire", "Fire", "red_fire", "woman_2"])
def test_common_words_are_refused_with_reason_and_suggestion(trigger: str) -> None:
    with pytest.raises(InvalidTrigger) as err:
        validate_trigger(trigger)
    msg = str(err.value)
    assert "not a rare token" in msg and "common English word" in msg
    suggestion = msg.split("such as '")[1].split("'")[0]
    assert check_trigger(suggestion) is None  # the suggestion itself passes


@pytest.mark.parametrize("trigger", ["", "a", "two words", "ohwx,woman", "x" * 65])
def test_malformed_triggers_are_refused(trigger: str) -> None:
    with pytest.raises(InvalidTrigger, match="letters, digits"):
        validate_trigger(trigger)


def test_word_list_is_shipped_and_compact() -> None:
    words = english_words()
    assert 20_000 < len(words) < 40_000
    assert {"beautiful", "running", "fire", "woman"} <= words
    assert not {"ohwx", "sks", "s86b5p"} & words


def test_tokenizer_commonness_is_checked_when_provisioned() -> None:
    tok = tiny_tokenizer()
    # in this vocabulary "ohwx" is a frequent single token: not rare for THIS model
    assert check_trigger("ohwx_woman") is None
    problem = check_trigger("ohwx_woman", tok)
    assert problem is not None and "single common token" in problem
    with pytest.raises(InvalidTrigger, match="tiny-wordlevel"):
        validate_trigger("ohwx_woman", tok)
    # a rare vocabulary entry (high id) and an unknown, multi-piece token both pass
    assert check_trigger("zqxv", tok) is None
    assert check_trigger("sks_person", tok) is None


def test_suggestions_are_deterministic_and_rare() -> None:
    assert suggest_trigger("fire") == suggest_trigger("fire")
    assert suggest_trigger("fire") != suggest_trigger("water")
    assert check_trigger(suggest_trigger("x", tiny_tokenizer()), tiny_tokenizer()) is None
