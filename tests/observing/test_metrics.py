"""The metric definitions: names, units, labels and the supervisor's operations.

Every test builds its own registry through Metrics(), so nothing here touches
prometheus_client's global registry or another test's values.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from daemon import __version__
from daemon.observing.metrics import PAGE_BUCKETS, PREFIX, Metrics
from daemon.protocol import EngineInfo, GpuMemory

QWEN = EngineInfo(
    engine="hf_vlm",
    model="qwen2-vl-2b",
    device="cuda:0",
    dtype="bfloat16",
    attention="sdpa",
)
RAPID = EngineInfo(
    engine="rapid", model="rapidocr", device="cpu", dtype="float32", attention="none"
)


def families(metrics: Metrics) -> dict[str, str]:
    """Family name -> type, as a scraper parses them from the text exposition."""
    text = generate_latest(metrics.registry).decode()
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def exposition(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def active_model_series(metrics: Metrics) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in metrics.registry.collect()
        if family.name == PREFIX + "active_model_info"
        for sample in family.samples
    ]


def test_every_metric_carries_the_prefix_and_its_prometheus_type() -> None:
    """Each metric of docs/metrics.md is exported under ocr_inbox_ with the type its suffix promises."""
    found = families(Metrics())

    expected = {
        "ocr_inbox_file_seconds": "histogram",
        "ocr_inbox_queue_wait_seconds": "histogram",
        "ocr_inbox_page_inference_seconds": "histogram",
        "ocr_inbox_model_load_seconds": "histogram",
        "ocr_inbox_files": "counter",
        "ocr_inbox_pages": "counter",
        "ocr_inbox_generated_tokens": "counter",
        "ocr_inbox_worker_restarts": "counter",
        "ocr_inbox_fallbacks": "counter",
        "ocr_inbox_cuda_errors": "counter",
        "ocr_inbox_output_errors": "counter",
        "ocr_inbox_queue_depth": "gauge",
        "ocr_inbox_files_settling": "gauge",
        "ocr_inbox_worker_up": "gauge",
        "ocr_inbox_worker_info": "gauge",
        "ocr_inbox_active_model_info": "gauge",
        "ocr_inbox_chain_position": "gauge",
        "ocr_inbox_last_success_timestamp_seconds": "gauge",
        "ocr_inbox_gpu_memory_allocated_bytes": "gauge",
        "ocr_inbox_gpu_memory_reserved_bytes": "gauge",
        "ocr_inbox_gpu_memory_peak_bytes": "gauge",
        "ocr_inbox_gpu_memory_used_bytes": "gauge",
        "ocr_inbox_gpu_memory_total_bytes": "gauge",
        "ocr_inbox_build_info": "gauge",
    }
    assert {name: found.get(name) for name in expected} == expected
    ours = {name for name in found if not name.endswith("_created")}
    assert all(name.startswith(PREFIX) for name in ours)


def test_histograms_are_in_seconds_and_memory_in_bytes() -> None:
    """Durations use the base unit seconds and memory the base unit bytes, in the name."""
    found = families(Metrics())

    histograms = [name for name, kind in found.items() if kind == "histogram"]
    memory = [name for name in found if "_memory_" in name and not name.endswith("_created")]

    assert histograms and all(name.endswith("_seconds") for name in histograms)
    assert len(memory) == 5 and all(name.endswith("_bytes") for name in memory)


def test_counters_are_exposed_with_total_suffix() -> None:
    """Counters appear on the wire as <name>_total, as PromQL in the deploy files expects."""
    metrics = Metrics()
    metrics.files.labels(inbox="scans", outcome="done").inc()
    metrics.pages.labels(model="rapidocr").inc(3)
    metrics.generated_tokens.labels(model="qwen2-vl-2b").inc(120)

    text = exposition(metrics)

    assert 'ocr_inbox_files_total{inbox="scans",outcome="done"} 1.0' in text
    assert 'ocr_inbox_pages_total{model="rapidocr"} 3.0' in text
    assert 'ocr_inbox_generated_tokens_total{model="qwen2-vl-2b"} 120.0' in text


def test_outcome_restart_and_cuda_series_exist_at_zero_before_any_event() -> None:
    """Pre-created label sets export 0, so rates and the alert rules see zeros, not absence."""
    metrics = Metrics()
    metrics.declare_inboxes(["scans", "letters"])
    registry = metrics.registry

    for inbox in ("scans", "letters"):
        for outcome in ("done", "failed", "skipped", "vanished"):
            labels = {"inbox": inbox, "outcome": outcome}
            assert registry.get_sample_value("ocr_inbox_files_total", labels) == 0
    for reason in ("crash", "hang", "cuda_fatal", "load_error"):
        assert registry.get_sample_value("ocr_inbox_worker_restarts_total", {"reason": reason}) == 0
    for kind in ("oom", "cuda_fatal"):
        assert registry.get_sample_value("ocr_inbox_cuda_errors_total", {"kind": kind}) == 0
    assert registry.get_sample_value("ocr_inbox_queue_depth") == 0


def test_build_info_carries_the_package_version() -> None:
    """ocr_inbox_build_info is 1 with the running version as its label."""
    registry = Metrics().registry

    assert registry.get_sample_value("ocr_inbox_build_info", {"version": __version__}) == 1


def test_histogram_observations_land_in_buckets_with_sum_and_count() -> None:
    """A fast CPU page and a slow VLM page land in different buckets; _sum and _count add up."""
    metrics = Metrics()
    pages = metrics.page_inference_seconds

    pages.labels(model="rapidocr").observe(0.04)
    pages.labels(model="qwen2-vl-2b").observe(90)
    pages.labels(model="qwen2-vl-2b").observe(30)

    get = metrics.registry.get_sample_value
    name = "ocr_inbox_page_inference_seconds"
    assert get(name + "_bucket", {"model": "rapidocr", "le": "0.05"}) == 1
    assert get(name + "_bucket", {"model": "rapidocr", "le": "0.025"}) == 0
    assert get(name + "_bucket", {"model": "qwen2-vl-2b", "le": "60.0"}) == 1
    assert get(name + "_bucket", {"model": "qwen2-vl-2b", "le": "120.0"}) == 2
    assert get(name + "_bucket", {"model": "qwen2-vl-2b", "le": "+Inf"}) == 2
    assert get(name + "_sum", {"model": "qwen2-vl-2b"}) == 120
    assert get(name + "_count", {"model": "qwen2-vl-2b"}) == 2


def test_page_buckets_span_tens_of_milliseconds_to_minutes() -> None:
    """The page buckets resolve a 10 ms CPU page and a ten-minute VLM page alike."""
    assert min(PAGE_BUCKETS) <= 0.01
    assert max(PAGE_BUCKETS) >= 600
    assert list(PAGE_BUCKETS) == sorted(PAGE_BUCKETS)


def test_set_active_model_keeps_exactly_one_series_per_inbox() -> None:
    """Switching models replaces an inbox's info series instead of adding a second one."""
    metrics = Metrics()

    metrics.set_active_model(QWEN, 0, inboxes=["scans"])
    metrics.set_active_model(RAPID, 1, inboxes=["scans"])

    assert active_model_series(metrics) == [
        {
            "inbox": "scans",
            "model": "rapidocr",
            "engine": "rapid",
            "device": "cpu",
            "dtype": "float32",
            "attention": "none",
        }
    ]
    assert metrics.registry.get_sample_value("ocr_inbox_chain_position", {"inbox": "scans"}) == 1


def test_each_inbox_has_its_own_chain_series() -> None:
    """Two inboxes on different chains each show their own model and position."""
    metrics = Metrics()

    metrics.set_active_model(QWEN, 0, inboxes=["scans", "letters"])
    metrics.set_active_model(RAPID, 1, inboxes=["letters"])

    assert sorted((s["inbox"], s["model"]) for s in active_model_series(metrics)) == [
        ("letters", "rapidocr"),
        ("scans", "qwen2-vl-2b"),
    ]
    position = metrics.registry.get_sample_value
    assert position("ocr_inbox_chain_position", {"inbox": "scans"}) == 0
    assert position("ocr_inbox_chain_position", {"inbox": "letters"}) == 1
    metrics.forget_chains()
    assert active_model_series(metrics) == []
    assert position("ocr_inbox_chain_position", {"inbox": "letters"}) is None


def test_set_active_model_exports_dtype_and_attention() -> None:
    """The info series carries the dtype and attention the worker reported, with value 1."""
    metrics = Metrics()

    metrics.set_active_model(QWEN, 0, inboxes=["scans"])

    labels = {
        "inbox": "scans",
        "model": "qwen2-vl-2b",
        "engine": "hf_vlm",
        "device": "cuda:0",
        "dtype": "bfloat16",
        "attention": "sdpa",
    }
    assert metrics.registry.get_sample_value("ocr_inbox_active_model_info", labels) == 1


def test_set_active_model_none_clears_the_info_but_keeps_the_position() -> None:
    """With no model loaded the info series disappears and the chain position still updates."""
    metrics = Metrics()
    metrics.set_active_model(QWEN, 0, inboxes=["scans"])

    metrics.set_active_model(None, 2, inboxes=["scans"])

    assert active_model_series(metrics) == []
    assert metrics.registry.get_sample_value("ocr_inbox_chain_position", {"inbox": "scans"}) == 2


def test_record_memory_sets_torch_and_nvml_gauges_per_device() -> None:
    """Each reading sets allocated, reserved, peak, used and total under its device label."""
    metrics = Metrics()

    metrics.record_memory(
        [
            GpuMemory(0, 1_000, 2_000, 3_000, nvml_used_bytes=4_000, nvml_total_bytes=8_000),
            GpuMemory(1, 10, 20, 30, nvml_used_bytes=40, nvml_total_bytes=80),
        ]
    )

    get = metrics.registry.get_sample_value
    assert get("ocr_inbox_gpu_memory_allocated_bytes", {"device": "0"}) == 1_000
    assert get("ocr_inbox_gpu_memory_reserved_bytes", {"device": "0"}) == 2_000
    assert get("ocr_inbox_gpu_memory_peak_bytes", {"device": "0"}) == 3_000
    assert get("ocr_inbox_gpu_memory_used_bytes", {"device": "0"}) == 4_000
    assert get("ocr_inbox_gpu_memory_total_bytes", {"device": "0"}) == 8_000
    assert get("ocr_inbox_gpu_memory_used_bytes", {"device": "1"}) == 40


def test_record_memory_without_nvml_leaves_used_and_total_absent() -> None:
    """Readings without NVML export torch's numbers only; no fake zero for used or total."""
    metrics = Metrics()

    metrics.record_memory([GpuMemory(0, 1_000, 2_000, 3_000)])

    get = metrics.registry.get_sample_value
    assert get("ocr_inbox_gpu_memory_allocated_bytes", {"device": "0"}) == 1_000
    assert get("ocr_inbox_gpu_memory_used_bytes", {"device": "0"}) is None
    assert get("ocr_inbox_gpu_memory_total_bytes", {"device": "0"}) is None


def test_each_instance_owns_its_registry() -> None:
    """Two Metrics() never share values, and a given registry is the one used."""
    first, second = Metrics(), Metrics()
    first.files.labels(inbox="scans", outcome="done").inc()

    assert first.registry is not second.registry
    done = {"inbox": "scans", "outcome": "done"}
    assert second.registry.get_sample_value("ocr_inbox_files_total", done) in (0, None)

    registry = CollectorRegistry()
    assert Metrics(registry).registry is registry
    assert registry.get_sample_value("ocr_inbox_build_info", {"version": __version__}) == 1


def test_worker_info_keeps_one_series_per_slot() -> None:
    """A slot's new worker replaces its info series; a slot that is gone loses it; others stay."""
    metrics = Metrics()
    metrics.set_worker_info("0", "qwen", "cuda:0", "0")
    metrics.set_worker_info("1", "qwen", "cuda:1", "1")
    metrics.set_worker_info("0", "rapid", "cuda:0", "0")  # the chain fell back
    metrics.forget_worker_info("1")
    metrics.forget_worker_info("7")  # never there: nothing happens

    series = [
        sample.labels
        for family in metrics.registry.collect()
        if family.name == PREFIX + "worker_info"
        for sample in family.samples
    ]
    assert series == [
        {"worker": "0", "model": "rapid", "device": "cuda:0", "cuda_visible_devices": "0"}
    ]
