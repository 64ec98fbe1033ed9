"""GPU benchmark: a Qwen2-VL-2B-sized model with random weights, fixed output length.

    python bench/gpu_vlm.py [--batches 1,4,8] [--attention sdpa,eager] [--new-tokens 64]
                            [--model-dir FOLDER]

The model is built from Qwen2-VL-2B-Instruct's architecture numbers (no
download) with random bf16 weights, so its answers are noise; what it measures
is what the hardware does with that shape of model. Every page generates
exactly --new-tokens tokens (min_new_tokens = max_new_tokens), so runs compare.
With --model-dir it loads such a model from a folder (bench/gpu_model.py
writes one) with from_pretrained, as the daemon does, and times the load;
without, it builds the model in memory and reports how long that took.

Per attention implementation and batch size it reports:
- prefill ms per page: generate(max_new_tokens=1) over the batch (vision tower +
  prompt prefill + one token), divided by the pages;
- decode tokens/s: (new_tokens - 1) * batch / (time(full) - time(prefill));
- the decode bound: memory bandwidth / bytes of language-model weights, the rate
  at which a memory-bound decoder can read its weights once per step (times the
  batch, since a batch shares each read);
- peak VRAM (torch.cuda.max_memory_allocated);
- model load seconds (from_pretrained onto the device, or the in-memory build).

Without a GPU it says so and exits 2 (use --device cpu --tiny to check the
script itself on a CPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

EXIT_NO_GPU = 2

# Qwen/Qwen2-VL-2B-Instruct config.json (architecture only).
QWEN2_VL_2B_TEXT = {
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rms_norm_eps": 1e-6,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 1000000.0,
        "mrope_section": [16, 24, 24],
    },
}
QWEN2_VL_2B_VISION = {
    "depth": 32,
    "embed_dim": 1280,
    "hidden_size": 1536,
    "mlp_ratio": 4,
    "num_heads": 16,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
}
# A few layers and narrow widths: only for checking the script on a CPU.
TINY_TEXT = {
    **QWEN2_VL_2B_TEXT,
    "vocab_size": 1024,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    "bos_token_id": 0,
    "eos_token_id": 1,
}
TINY_VISION = {**QWEN2_VL_2B_VISION, "depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2}
# Token ids of Qwen2-VL's vocabulary used to lay out the prompt (scaled down for --tiny).
IMAGE_TOKENS = {"image": 151655, "video": 151656, "start": 151652, "end": 151653}
TINY_IMAGE_TOKENS = {"image": 1000, "video": 1001, "start": 1002, "end": 1003}


@dataclass(frozen=True, slots=True)
class Row:
    attention: str
    batch: int
    prefill_ms_per_page: float
    decode_tokens_per_s: float
    peak_vram_bytes: int
    bound_tokens_per_s: float | None
    load_seconds: float


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,4,8", help="pages per generate call")
    parser.add_argument("--attention", default="sdpa,eager", help="implementations to compare")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per page")
    parser.add_argument("--page", default="1008x1344", help="page size in pixels, WxH")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median)")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N (or cpu with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model: check the script")
    parser.add_argument(
        "--model-dir", default=None, help="load the model from this folder (bench/gpu_model.py)"
    )
    parser.add_argument(
        "--bandwidth-gbs", type=float, default=None, help="memory bandwidth if torch cannot tell"
    )
    return parser.parse_args(argv)


def memory_bandwidth_gbs(device: Any) -> float | None:
    """Peak DRAM bandwidth from the memory clock and bus width (double data rate)."""
    import torch

    properties = torch.cuda.get_device_properties(device)
    clock_khz = getattr(properties, "memory_clock_rate", 0)
    bus_bits = getattr(properties, "memory_bus_width", 0)
    if not clock_khz or not bus_bits:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9


def build_model(tiny: bool, attention: str, dtype: Any, device: Any) -> Any:
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tokens = TINY_IMAGE_TOKENS if tiny else IMAGE_TOKENS
    config = Qwen2VLConfig(
        text_config=TINY_TEXT if tiny else QWEN2_VL_2B_TEXT,
        vision_config=TINY_VISION if tiny else QWEN2_VL_2B_VISION,
        image_token_id=tokens["image"],
        video_token_id=tokens["video"],
        vision_start_token_id=tokens["start"],
        vision_end_token_id=tokens["end"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation=attention
        )
    return model.eval()


def synchronize(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_model(
    args: argparse.Namespace, attention: str, dtype: Any, device: Any
) -> tuple[Any, float]:
    """The model on the device and the seconds that took (a load from disk, or a build)."""
    began = time.perf_counter()
    if args.model_dir:
        from transformers import Qwen2VLForConditionalGeneration

        model = Qwen2VLForConditionalGeneration.from_pretrained(
            args.model_dir, dtype=dtype, attn_implementation=attention, device_map={"": device}
        ).eval()
    else:
        model = build_model(args.tiny, attention, dtype, device)
    synchronize(device)
    return model, time.perf_counter() - began


def language_model_bytes(model: Any) -> int:
    """Bytes a decode step reads: the language model's weights (tied ones once)."""
    seen: set[int] = set()
    total = 0
    for name, parameter in model.named_parameters():
        if "visual" in name or id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += parameter.numel() * parameter.element_size()
    return total


def render_page(size: tuple[int, int]) -> Any:
    """A white page with a line of text every 40 pixels."""
    from PIL import Image, ImageDraw

    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    for line in range(0, size[1] - 40, 40):
        draw.text(
            (40, line + 20), f"Invoice 48213 line {line // 40}: delivered copper wire", fill="black"
        )
    return page


def page_inputs(
    size: tuple[int, int], batch: int, config: Any, device: Any, dtype: Any
) -> dict[str, Any]:
    """One rendered page per batch row, as Qwen2-VL's processor would lay it out.

    The image token ids come from the model's config, so a model built here
    and one loaded from a folder (with its own tokenizer's ids) both work.
    """
    import torch
    from transformers import Qwen2VLImageProcessor

    page = render_page(size)
    # Qwen2-VL's own default range; a page of this size is used as is (multiples of 28).
    images = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 16384)
    pixels = images(images=[page] * batch, return_tensors="pt")
    image_tokens = int(pixels["image_grid_thw"][0].prod()) // 4
    start, image, end = (
        config.vision_start_token_id,
        config.image_token_id,
        config.vision_end_token_id,
    )
    prompt = [start, *[image] * image_tokens, end, *range(100, 140)]
    input_ids = torch.tensor([prompt] * batch)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "pixel_values": pixels["pixel_values"].to(device, dtype),
        "image_grid_thw": pixels["image_grid_thw"].to(device),
        "image_tokens": image_tokens,
    }


def timed_generate(model: Any, inputs: dict[str, Any], new_tokens: int, device: Any) -> float:
    import torch

    arguments = {key: value for key, value in inputs.items() if key != "image_tokens"}
    synchronize(device)
    began = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            **arguments,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=0,
        )
    synchronize(device)
    return time.perf_counter() - began


def measure(
    model: Any, inputs: dict[str, Any], batch: int, args: argparse.Namespace, device: Any
) -> tuple[float, float, int]:
    import torch

    timed_generate(model, inputs, 2, device)  # warm-up: kernels, allocator, caches
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    prefill = statistics.median(
        timed_generate(model, inputs, 1, device) for _ in range(args.repeats)
    )
    full = statistics.median(
        timed_generate(model, inputs, args.new_tokens, device) for _ in range(args.repeats)
    )
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0
    decode_seconds = max(full - prefill, 1e-9)
    return prefill * 1000 / batch, (args.new_tokens - 1) * batch / decode_seconds, peak


def render(rows: list[Row], header: list[str]) -> str:
    lines = [*header, ""]
    lines.append(
        "| attention | batch | prefill ms/page | decode tok/s (batch) | decode tok/s per page "
        "| % of decode bound | peak VRAM GiB | model load s |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        share = (
            f"{100 * row.decode_tokens_per_s / row.bound_tokens_per_s:.0f}%"
            if row.bound_tokens_per_s
            else "n/a"
        )
        lines.append(
            f"| {row.attention} | {row.batch} | {row.prefill_ms_per_page:.1f} "
            f"| {row.decode_tokens_per_s:.1f} | {row.decode_tokens_per_s / row.batch:.1f} "
            f"| {share} | {row.peak_vram_bytes / 2**30:.2f} | {row.load_seconds:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import transformers

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_vlm benchmark: no GPU here (torch.cuda.is_available() is False); "
            "run it on a machine with a CUDA GPU, or pass --device cpu --tiny to check the script.",
            file=sys.stderr,
        )
        return EXIT_NO_GPU
    if device.type != "cuda" and not (args.tiny or args.model_dir):
        print(
            "gpu_vlm benchmark: a 2B model on the CPU is not a GPU benchmark; add --tiny "
            "(or --model-dir with a tiny model's folder)",
            file=sys.stderr,
        )
        return EXIT_NO_GPU
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
        bf16 = torch.cuda.get_device_capability(device)[0] >= 8
        dtype = torch.bfloat16 if bf16 else torch.float16
    else:
        dtype = torch.float32
    width, height = (int(value) for value in args.page.lower().split("x"))
    batches = [int(value) for value in args.batches.split(",")]
    bandwidth = args.bandwidth_gbs
    if bandwidth is None and device.type == "cuda":
        bandwidth = memory_bandwidth_gbs(device)

    rows: list[Row] = []
    header: list[str] = []
    for attention in args.attention.split(","):
        model, load_seconds = load_model(args, attention, dtype, device)
        weights = language_model_bytes(model)
        bound_per_sequence = bandwidth * 1e9 / weights if bandwidth else None
        if not header:
            name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
            capability = "-"
            if device.type == "cuda":
                major, minor = torch.cuda.get_device_capability(device)
                capability = f"sm_{major}{minor}"
            parameters = sum(parameter.numel() for parameter in model.parameters())
            header = [
                f"Device: {name} ({capability}); torch {torch.__version__}, "
                f"transformers {transformers.__version__}, {str(dtype).removeprefix('torch.')}",
                f"Model: Qwen2-VL-2B-sized{' (TINY)' if args.tiny else ''}, random weights, "
                f"{parameters / 1e9:.2f} B parameters; language model {weights / 1e9:.2f} GB; "
                + (
                    f"loaded from {args.model_dir} with from_pretrained"
                    if args.model_dir
                    else "built in memory (model load s: the build; --model-dir times a load)"
                ),
                f"Memory bandwidth: {f'{bandwidth:.0f} GB/s' if bandwidth else 'unknown'}; decode bound "
                f"{f'{bound_per_sequence:.0f} tokens/s per sequence' if bound_per_sequence else 'n/a'}",
            ]
        for batch in batches:
            inputs = page_inputs((width, height), batch, model.config, device, dtype)
            if len(header) == 3:
                header.append(
                    f"Page: {width}x{height} px -> {inputs['image_tokens']} image tokens; "
                    f"{args.new_tokens} new tokens per page; median of {args.repeats} runs"
                )
            prefill_ms, decode_rate, peak = measure(model, inputs, batch, args, device)
            bound = bound_per_sequence * batch if bound_per_sequence else None
            rows.append(Row(attention, batch, prefill_ms, decode_rate, peak, bound, load_seconds))
            print(f"  {attention} batch {batch}: done", file=sys.stderr)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    sys.stdout.write(render(rows, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
