"""Shared family behaviour: cutting answers at stop tokens and counting tokens."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from daemon.worker.families.base import Family, FamilyError, Generated, cut_at_stop
from harness.tiny_models import QWEN_SPECIALS
from harness.tiny_models import _tokenizer as trained_tokenizer


def test_answer_is_cut_at_its_first_stop_token() -> None:
    """Tokens after the first stop (padding of finished rows) are not part of the answer."""
    assert cut_at_stop([5, 6, 2, 9, 9], [2, 3]) == ([5, 6], True)


def test_answer_without_stop_token_ran_to_the_limit() -> None:
    """No stop token: the whole answer, and stopped is False."""
    assert cut_at_stop([5, 6, 7], [2]) == ([5, 6, 7], False)


def test_token_count_includes_the_stop_token() -> None:
    """The stop token was generated too: it counts."""
    assert Generated(token_ids=[1, 2], stopped=True, text="ab").token_count == 3
    assert Generated(token_ids=[1, 2], stopped=False, text="ab").token_count == 2


def test_custom_prompt_replaces_the_mode_prompt() -> None:
    """A prompt from the settings is used as is; the mode stays the default."""
    family = Family(prompt="Transcribe.")
    assert (family.mode, family.prompt) == ("plain", "Transcribe.")


def test_unknown_mode_names_the_modes_there_are() -> None:
    """A mode the family lacks is a FamilyError listing the real ones."""
    with pytest.raises(FamilyError, match="choose one of \\['plain'\\]"):
        Family(mode="verse")


class _StopFamily(Family):
    stop_tokens = ("<|im_end|>", "<|not_in_this_vocabulary|>")


@pytest.mark.parametrize("unknown_token", [None, "<|endoftext|>"])
def test_stop_token_ids_are_those_of_the_stop_tokens_the_tokenizer_has(
    unknown_token: str | None,
) -> None:
    """A family stop token adds its id when the tokenizer has it; a missing one adds nothing, not even the unknown token's id."""
    tokenizer = trained_tokenizer(QWEN_SPECIALS, eos="<|endoftext|>", pad="<|endoftext|>")
    if unknown_token is not None:
        tokenizer.unk_token = unknown_token
    vocabulary = tokenizer.get_vocab()
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=None))
    ids = _StopFamily().stop_token_ids(SimpleNamespace(tokenizer=tokenizer), model)
    assert ids == sorted({vocabulary["<|endoftext|>"], vocabulary["<|im_end|>"]})
