"""Output names for hostile input names: which names can carry outputs, and temp files that fit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.outputs import writing as outputs

NAME_MAX = 255


def test_names_up_to_name_max_minus_the_longest_suffix_can_carry_outputs(tmp_path: Path) -> None:
    """240 bytes fit (NAME.ocr.error.json is 255); 241 bytes are name_too_long, naming both lengths."""
    assert outputs.name_problem(tmp_path / ("a" * 236 + ".png")) is None
    problem = outputs.name_problem(tmp_path / ("a" * 237 + ".png"))
    assert problem is not None
    code, message = problem
    assert code == "name_too_long"
    assert "241 bytes" in message and "at most 240 bytes" in message


def test_name_length_is_counted_in_bytes_not_characters(tmp_path: Path) -> None:
    """80 three-byte characters plus '.png' are 244 bytes: too long, though only 84 characters."""
    problem = outputs.name_problem(tmp_path / ("文" * 80 + ".png"))
    assert problem is not None and problem[0] == "name_too_long"


def test_name_that_is_not_utf8_is_refused_showing_its_bytes(tmp_path: Path) -> None:
    """A Latin-1 name is name_not_utf8, and the message shows the bad bytes as \\xNN."""
    problem = outputs.name_problem(tmp_path / os.fsdecode(b"caf\xe9.png"))
    assert problem is not None
    assert problem[0] == "name_not_utf8"
    assert "caf\\xe9.png" in problem[1]


@pytest.mark.parametrize(
    "name",
    [
        "a" * 236 + ".png",  # the longest name that fits
        "a" + "é" * 117 + ".png",  # 239 bytes: the temp name cuts inside a character
        "文" * 78 + ".png",  # 238 bytes of three-byte characters
    ],
    ids=["ascii-240", "two-byte-239", "three-byte-238"],
)
def test_longest_names_get_every_output_and_leave_no_temp_file(tmp_path: Path, name: str) -> None:
    """Outputs and error sidecars are written for names up to 240 bytes; temp names are cut to fit."""
    source = tmp_path / name
    source.write_bytes(b"input")
    paths = outputs.write_success(
        source, {"md": b"text\n"}, {"input": {"sha256": "x"}}, indent=None
    )
    assert paths.markdown.read_text() == "text\n"
    outputs.write_failure(source, {"input": {"sha256": "x"}, "error": {"code": "corrupt"}})
    assert paths.error.exists() and not paths.json.exists()
    assert sorted(os.listdir(tmp_path)) == sorted([name, paths.error.name])
    assert max(len(os.fsencode(entry)) for entry in os.listdir(tmp_path)) <= NAME_MAX
