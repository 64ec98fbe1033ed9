"""Vision-language models end to end: `once --model` and the running daemon, on tiny real architectures.

The models are randomly initialised, so their text is noise: the tests assert
on what must hold (outputs written, metadata, token counts, batching, the
empty/degenerate failures handled by the chain), not on the words.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness import pages
from harness.driver import base_settings, outputs_of, read_json, run_cli, running_daemon
from harness.drops import place
from harness.tiny_models import tiny_model

pytestmark = pytest.mark.slow

PAGE = pages.render_page(("Tiny model page",), width=224, height=224, font_px=20, margin=10)


def _assert_vlm_metadata(
    document: dict[str, Any], family: str, max_tokens: int, attention: str = "sdpa"
) -> None:
    model = document["model"]
    assert model["engine"] == "hf_vlm"
    assert model["family"] == family
    assert (model["device"], model["dtype"], model["attention"]) == ("cpu", "float32", attention)
    for page in document["pages"]:
        assert 1 <= page["tokens"] <= max_tokens
        assert page["text"].strip()


def test_once_with_model_flag_uses_that_model(tmp_path: Path, tiny_models_root: Path) -> None:
    """`once --model FOLDER` runs the folder's model, family recognised, without a settings file."""
    folder = tiny_model("qwen2_vl", tiny_models_root, "brief")
    image = pages.save_png(PAGE, tmp_path / "scan.png")
    pdf = pages.save_pdf([PAGE, PAGE], tmp_path / "doc.pdf", dpi=72)
    result = run_cli(
        "once", "--model", str(folder), str(image), str(pdf), cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:]
    for source, page_count in ((image, 1), (pdf, 2)):
        found = outputs_of(source)
        assert set(found) == {"md", "json"}
        document = read_json(found["json"])
        assert len(document["pages"]) == page_count
        _assert_vlm_metadata(document, "qwen2_vl", 2048)
    loaded = [json.loads(line) for line in result.stdout.splitlines() if '"model.loaded"' in line]
    assert loaded[0]["attention"] == "sdpa" and loaded[0]["family"] == "qwen2_vl"


@pytest.mark.parametrize("kind", ["qwen2_5_vl", "qwen3_vl", "got_ocr2"])
def test_other_families_through_once(tmp_path: Path, tiny_models_root: Path, kind: str) -> None:
    """Qwen2.5-VL, Qwen3-VL and GOT-OCR 2.0 run through the same worker path and record their family."""
    folder = tiny_model(kind, tiny_models_root, "brief")
    image = pages.save_png(PAGE, tmp_path / "scan.png")
    result = run_cli("once", "--model", str(folder), str(image), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    document = read_json(outputs_of(image)["json"])
    if kind == "got_ocr2":
        # transformers has no SDPA path for GOT-OCR 2.0: auto falls back to eager and says why.
        _assert_vlm_metadata(document, kind, 2048, attention="eager")
        reasons = document["model"]["details"]["attention_fallbacks"]
        assert any("sdpa" in reason and "does not support" in reason for reason in reasons)
    else:
        _assert_vlm_metadata(document, kind, 2048)


def test_daemon_batches_pages_of_a_pdf(tmp_path: Path, tiny_models_root: Path) -> None:
    """In the daemon, a 5-page PDF with batch_size 2 is recognised in generate() batches of 2, 2 and 1."""
    folder = tiny_model("qwen2_vl", tiny_models_root, "normal")
    inbox = tmp_path / "inbox"
    settings = base_settings(inbox, tmp_path / "state", worker={"chain": ["tiny"]})
    settings["models"] = {
        "tiny": {"engine": "hf_vlm", "path": str(folder), "max_new_tokens": 8, "batch_size": 2}
    }
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready(timeout=300)
        source = place(inbox / "five.pdf", lambda path: pages.save_pdf([PAGE] * 5, path, dpi=72))
        daemon.wait_for("file.done", file=str(source), timeout=600)
    document = read_json(outputs_of(source)["json"])
    assert [page["details"]["batch_pages"] for page in document["pages"]] == [2, 2, 2, 2, 1]
    _assert_vlm_metadata(document, "qwen2_vl", 8)
    assert sum(page["tokens"] for page in document["pages"]) <= 5 * 8


@pytest.mark.parametrize(
    ("behaviour", "outcome"), [("empty", "empty_output"), ("degenerate", "degenerate_output")]
)
def test_empty_and_degenerate_output_move_the_file_down_the_chain(
    tmp_path: Path,
    tiny_models_root: Path,
    behaviour: str,
    outcome: str,
) -> None:
    """A VLM that answers nothing (or loops to the limit) hands the file to the next model; the JSON keeps the trail."""
    folder = tiny_model("qwen2_vl", tiny_models_root, behaviour)  # type: ignore[arg-type]
    inbox = tmp_path / "inbox"
    settings = base_settings(inbox, tmp_path / "state", worker={"chain": ["vlm", "fake"]})
    settings["models"] = {
        "vlm": {"engine": "hf_vlm", "path": str(folder), "max_new_tokens": 40},
        "fake": {"engine": "faulty"},
    }
    with running_daemon(tmp_path, settings) as daemon:
        daemon.wait_ready(timeout=300)
        source = place(inbox / "page.png", lambda path: pages.save_png(PAGE, path))
        daemon.wait_for("file.done", file=str(source), timeout=600)
        fallback = daemon.find("file.fallback", file=str(source))
        assert fallback and fallback[0]["reason"] == outcome
        # The VLM stays the daemon's model: one file's output says nothing about the model.
        assert not daemon.find("chain.fallback")
    document = read_json(outputs_of(source)["json"])
    assert document["model"]["name"] == "fake"
    assert [(step["model"], step["outcome"]) for step in document["fallback_trail"]] == [
        ("vlm", outcome)
    ]


def test_trust_remote_code_model_runs_through_once(tmp_path: Path, tiny_models_root: Path) -> None:
    """A model whose modeling code lives in its folder runs when trust_remote_code is set, and is refused otherwise."""
    folder = tiny_model("dots_ocr_remote", tiny_models_root, "normal")
    image = pages.save_png(PAGE, tmp_path / "scan.png")
    refused = run_cli("once", "--model", str(folder), str(image), cwd=tmp_path, timeout=600)
    assert refused.returncode == 1
    assert "trust_remote_code" in refused.stdout
    config = tmp_path / "s.toml"
    config.write_text(
        f'[worker]\nchain = ["dots"]\n[models.dots]\nengine = "hf_vlm"\npath = "{folder}"\n'
        "trust_remote_code = true\nmax_new_tokens = 16\n"
    )
    accepted = run_cli("once", "--config", str(config), str(image), cwd=tmp_path, timeout=600)
    assert accepted.returncode == 0, accepted.stdout[-3000:]
    assert read_json(outputs_of(image)["json"])["model"]["family"] == "dots_ocr"


def test_doctor_on_this_machine(tmp_path: Path) -> None:
    """`doctor` reports no GPU here, the embedded engine loading, and exits 0; --json is machine-readable."""
    text = run_cli("doctor", cwd=tmp_path, timeout=300)
    assert text.returncode == 0, text.stdout + text.stderr
    as_json = run_cli("doctor", "--json", cwd=tmp_path, timeout=300)
    assert as_json.returncode == 0
    report = json.loads(as_json.stdout)
    assert report["models"][0]["name"] == "rapid"
    missing = run_cli(
        "doctor", "--model", str(tmp_path / "no-such-model"), cwd=tmp_path, timeout=300
    )
    assert missing.returncode != 0
