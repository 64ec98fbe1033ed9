"""A Qwen2-VL-2B-sized model folder with random weights, for the daemon to load like a real one.

    python -m bench.gpu_model --out FOLDER [--device cuda|cpu] [--tiny]

Writes FOLDER/model (config.json, safetensors weights, generation config,
tokenizer, processor, chat template) and FOLDER/page.png, a page of text, then
prints one JSON line: where they are, the dtype the daemon's `auto` should
pick on this device, the parameter count, and the build and save seconds.

The architecture numbers are Qwen2-VL-2B-Instruct's (bench/gpu_vlm.py), so
`ocr-inbox once` on this folder loads, probes and runs a model of the real
size through the daemon's own worker (scripts/gpu_check.py does). The
tokenizer is the tiny byte-level BPE of harness/tiny_models.py: the
model's vocabulary stays the real 151,936 rows, the text it writes is noise
(ids the tokenizer does not know decode to nothing, so an empty answer is a
likely outcome, and the daemon's empty-output sidecar the documented result).
--tiny builds the narrow CPU version instead, to check the script.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.gpu_vlm import (
    QWEN2_VL_2B_TEXT,
    QWEN2_VL_2B_VISION,
    TINY_TEXT,
    TINY_VISION,
    render_page,
)

PAGE_SIZE = (1008, 1344)  # multiples of 28: 1,728 image tokens for Qwen2-VL
TINY_PAGE_SIZE = (224, 224)
# Qwen2-VL-2B-Instruct's preprocessor range (min, max pixels); the tiny one keeps CPU runs short.
PIXELS = (56 * 56, 28 * 28 * 16384)
TINY_PIXELS = (4 * 28 * 28, 16 * 28 * 28)


def expected_dtype(device: Any) -> Any:
    """What the daemon's dtype `auto` picks (daemon/worker/hardware.py): bf16 on sm_80+."""
    import torch

    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16


def build(out: Path, device_name: str, tiny: bool) -> dict[str, Any]:
    """Write the model folder and the page; return what the JSON line reports."""
    import torch
    from transformers import (
        AutoProcessor,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
    )
    from transformers.utils import logging as transformers_logging

    from harness.tiny_models import tiny_model

    transformers_logging.disable_progress_bar()  # per-shard bars in the check's logs say nothing
    device = torch.device(device_name)
    dtype = expected_dtype(device)
    began = time.perf_counter()
    # The tokenizer, chat template and video processor of the tiny Qwen2-VL fixture.
    donor = AutoProcessor.from_pretrained(str(tiny_model("qwen2_vl", out / "donor")))
    tokenizer = donor.tokenizer
    ids = {
        token: int(tokenizer.convert_tokens_to_ids(token))
        for token in ("<|endoftext|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")
    }
    text = {
        **(TINY_TEXT if tiny else QWEN2_VL_2B_TEXT),
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=TINY_VISION if tiny else QWEN2_VL_2B_VISION,
        image_token_id=int(tokenizer.convert_tokens_to_ids("<|image_pad|>")),
        video_token_id=int(tokenizer.convert_tokens_to_ids("<|video_pad|>")),
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    built = time.perf_counter()
    model.generation_config.eos_token_id = [ids["<|im_end|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    folder = out / "model"
    model.save_pretrained(folder)
    min_pixels, max_pixels = TINY_PIXELS if tiny else PIXELS
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=tokenizer,
        video_processor=donor.video_processor,
        chat_template=donor.chat_template,
    )
    processor.save_pretrained(folder)
    saved = time.perf_counter()
    page = out / "page.png"
    render_page(TINY_PAGE_SIZE if tiny else PAGE_SIZE).save(page)
    weights = sum(path.stat().st_size for path in folder.glob("*.safetensors"))
    return {
        "folder": str(folder),
        "page": str(page),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        "expected_dtype": str(dtype).removeprefix("torch."),
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "weights_bytes": weights,
        "build_seconds": round(built - began, 2),
        "save_seconds": round(saved - built, 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="the narrow CPU model")
    args = parser.parse_args(argv)
    if args.device == "cpu" and not args.tiny:
        print("gpu_model: a 2B model is built on a GPU; add --tiny for the CPU", file=sys.stderr)
        return 2
    print(json.dumps(build(args.out, args.device, args.tiny)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
