"""`ocr-inbox doctor` on this CPU machine: text and JSON reports, and the exit status."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from daemon.doctor import EXIT_FIRST_MODEL_FAILS, EXIT_OK, run_doctor
from daemon.settings import Settings
from harness.tiny_models import tiny_model


def settings_with(chain: list[str], models: dict[str, Any]) -> Settings:
    return Settings(worker={"chain": chain, "device": "auto"}, models=models)


def doctor_json(settings: Settings) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    code = run_doctor(settings, as_json=True, out=out)
    return code, json.loads(out.getvalue())


@pytest.fixture(scope="module")
def chain_report(tiny_models_root: Path) -> tuple[int, dict[str, Any]]:
    """rapid first, then a tiny local VLM, then a hub model that is not cached."""
    folder = tiny_model("qwen2_vl", tiny_models_root)
    settings = settings_with(
        ["rapid", "tiny", "uncached"],
        {
            "tiny": {"engine": "hf_vlm", "path": str(folder), "max_new_tokens": 4},
            "uncached": {"engine": "hf_vlm", "path": "ocr-inbox-tests/not-downloaded"},
        },
    )
    return doctor_json(settings)


def test_rapid_first_chain_exits_zero(chain_report: tuple[int, dict[str, Any]]) -> None:
    """The first model (rapid) loads here, so the verdict is OK whatever follows it."""
    code, report = chain_report
    assert code == EXIT_OK
    assert report["ok"] is True
    assert [model["name"] for model in report["models"]] == ["rapid", "tiny", "uncached"]
    rapid = report["models"][0]
    assert rapid["engine"] == "rapid" and rapid["loads"] and rapid["found"] is None


def test_json_says_no_gpu_and_what_the_cpu_runs(chain_report: tuple[int, dict[str, Any]]) -> None:
    """Versions, the no-GPU reason, CPU SDPA backends, flash_attn and NVML are reported."""
    import torch

    _, report = chain_report
    assert report["software"]["torch"] == torch.__version__
    assert report["software"]["transformers"]
    if not torch.cuda.is_available():
        assert report["gpus"] == []
        assert report["cuda"]["available"] is False
        assert report["cuda"]["reason"].startswith("no GPU")
    assert report["cpu"]["sdpa"]["math"]["ok"] is True
    assert set(report["flash_attn"]) >= {"installed", "version", "usable_on"}
    assert report["nvml"]["available"] or report["nvml"]["reason"]


def test_local_vlm_is_found_planned_and_loaded(chain_report: tuple[int, dict[str, Any]]) -> None:
    """A local hf_vlm model: found, family, dtype and attention, and it loads."""
    _, report = chain_report
    tiny = report["models"][1]
    assert tiny["found"] is True and Path(tiny["location"]).is_dir()
    assert (tiny["family"], tiny["device"], tiny["dtype"], tiny["attention"]) == (
        "qwen2_vl",
        "cpu",
        "float32",
        "sdpa",
    )
    assert tiny["loads"] is True and tiny["load_seconds"] is not None
    assert tiny["info"]["engine"] == "hf_vlm"


def test_uncached_hub_model_is_reported_not_found(chain_report: tuple[int, dict[str, Any]]) -> None:
    """A hub id missing from the cache is not downloaded; the error says how to fetch it."""
    _, report = chain_report
    uncached = report["models"][2]
    assert uncached["found"] is False and uncached["loads"] is False
    assert "hf download ocr-inbox-tests/not-downloaded" in uncached["error"]


def test_missing_first_model_exits_non_zero_with_text_report(tmp_path: Path) -> None:
    """A first model that cannot run makes the exit status non-zero; the text says why."""
    missing = tmp_path / "nowhere"
    settings = settings_with(
        ["gone", "rapid"], {"gone": {"engine": "hf_vlm", "path": str(missing)}}
    )
    out = io.StringIO()
    code = run_doctor(settings, as_json=False, out=out)
    text = out.getvalue()
    assert code == EXIT_FIRST_MODEL_FAILS
    assert "1. gone  engine hf_vlm  DOES NOT LOAD" in text
    assert f"no model folder at {missing}" in text
    assert "2. rapid  engine rapid  loads" in text
    assert "NOT OK: the first model of the chain, 'gone', cannot run here." in text
    assert "GPUs" in text and "sdpa math" in text


def test_a_vlm_is_planned_once_and_loaded_by_that_plan(
    tiny_models_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The doctor reports the very plan it loads with: one plan() per model, not one each."""
    from daemon.worker.engines.hf_vlm import HfVlmEngine

    plans: list[object] = []
    planned = HfVlmEngine.plan

    def counting_plan(engine: HfVlmEngine) -> Any:
        plans.append(planned(engine))
        return plans[-1]

    monkeypatch.setattr(HfVlmEngine, "plan", counting_plan)
    folder = tiny_model("qwen2_vl", tiny_models_root)
    settings = settings_with(
        ["tiny"], {"tiny": {"engine": "hf_vlm", "path": str(folder), "max_new_tokens": 4}}
    )
    code, report = doctor_json(settings)
    assert code == EXIT_OK
    assert report["models"][0]["loads"] is True
    assert len(plans) == 1


def test_doctor_shows_each_workers_device_and_pinning(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device list: the text lists every worker with its CUDA_VISIBLE_DEVICES; JSON carries it too."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # the GPUs this daemon may use
    settings = Settings(worker={"chain": ["rapid"], "device": ["cuda:0", "cuda:1"]})
    out = io.StringIO()
    code = run_doctor(settings, as_json=False, out=out)
    assert code == EXIT_OK
    assert "  cuda:0 (CUDA_VISIBLE_DEVICES=0), cuda:1 (CUDA_VISIBLE_DEVICES=1)\n" in out.getvalue()
    _, report = doctor_json(settings)
    assert report["workers"] == [
        "cuda:0 (CUDA_VISIBLE_DEVICES=0)",
        "cuda:1 (CUDA_VISIBLE_DEVICES=1)",
    ]
    assert (report["device_setting"], report["plan_problem"]) == (["cuda:0", "cuda:1"], None)


def test_doctor_says_not_ok_when_all_finds_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "all" with every GPU hidden: the daemon would refuse to start, so the doctor says NOT OK."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    out = io.StringIO()
    code = run_doctor(
        Settings(worker={"chain": ["rapid"], "device": "all"}), as_json=False, out=out
    )
    text = out.getvalue()
    assert code == EXIT_FIRST_MODEL_FAILS
    assert 'NOT PLANNED: worker.device = "all", but the daemon\'s CUDA_VISIBLE_DEVICES' in text
    assert "NOT OK: the workers' devices are not on this machine (see Workers)." in text
