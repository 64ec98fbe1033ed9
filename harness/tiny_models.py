"""Tiny, randomly initialised vision-language models of the real architectures.

Each builder writes a Hugging Face model folder (config.json, safetensors
weights, generation_config.json, tokenizer, processor, chat template) with
`save_pretrained`, on the CPU, in a second or two, so that the hf_vlm engine
loads it through exactly the code path users run: AutoProcessor and
AutoModelForImageTextToText (or the model's own code) from a local folder.
Nothing is downloaded: the tokenizer is a byte-level BPE trained here on a
few lines, with the special tokens each processor needs appended after the
learned vocabulary (so token 0 is an ordinary character, "!", as in Qwen's
real vocabulary).

Their answers are noise; what tests can rely on:
- behaviour "normal": answers end only at the token limit or an end token;
- behaviour "brief": generation_config.json boosts the end token's score
  exponentially after 3 answer tokens, so answers end after about 4 tokens
  whatever max_new_tokens is (fast end-to-end runs with default settings);
- behaviour "empty": generation_config.json suppresses every token but the end
  token, so the first answer token ends the answer (an empty answer);
- behaviour "degenerate": lm_head is all zeros, so every logit ties and greedy
  decoding picks token 0 ("!") forever, as NaN logits do in fp16;
- behaviour "sdpa_fails" (dots_ocr_remote only): the model loads with sdpa but
  its forward pass then fails the way a kernel without code for this GPU does.

Use `tiny_model(kind, root, behaviour)`: it builds once per folder and returns
the cached folder afterwards.
"""

from __future__ import annotations

import os

# Before transformers / huggingface_hub are imported: nothing may be fetched.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

Behaviour = Literal["normal", "brief", "empty", "degenerate", "sdpa_fails"]

QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
GOT_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<imgpad>")
DOTS_SPECIALS = (
    "<|endoftext|>",
    "<|system|>",
    "<|endofsystem|>",
    "<|user|>",
    "<|endofuser|>",
    "<|assistant|>",
    "<|endofassistant|>",
    "<|img|>",
    "<|endofimg|>",
    "<|imgpad|>",
    "<|video_pad|>",
)

CORPUS = (
    "Invoice number 48213 for the harbour office",
    "Delivered twelve boxes of copper wire today",
    "Please remit payment within thirty days",
    "Read all the text in this image and return it as Markdown in reading order.",
    'Please output the layout information from the PDF image: [{"bbox": [1, 2, 3, 4], '
    '"category": "Text", "text": "Hello"}]',
    "| column | value |\n| --- | --- |\n| a | 1 |",
    "You are a helpful assistant. OCR with format: $$ x^2 + y^2 = z^2 $$",
)

# Qwen2-VL's chat template, reduced to what OCR prompts use (one image, text).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# dots.ocr's chat template shape: its own role tokens and <|img|><|imgpad|><|endofimg|>.
DOTS_CHAT_TEMPLATE = (
    "{%- for m in messages %}"
    "{%- if m['role'] == 'system' %}{{- '<|system|>' + m['content'] + '<|endofsystem|>\n' }}"
    "{%- elif m['role'] == 'user' %}{{- '<|user|>' }}"
    "{%- if m['content'] is string %}{{- m['content'] }}"
    "{%- else %}{%- for c in m['content'] %}"
    "{%- if c['type'] == 'image' %}{{- '<|img|><|imgpad|><|endofimg|>' }}"
    "{%- elif c['type'] == 'text' %}{{- c['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}{{- '<|endofuser|>' }}"
    "{%- elif m['role'] == 'assistant' %}{{- '<|assistant|>' + m['content'] + '<|endofassistant|>' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>' }}{%- endif %}"
)

# The modeling code a trust_remote_code checkpoint ships, shaped like dots.ocr's
# (configuration_dots.py: DotsOCRConfig + DotsVLProcessor registered for
# "dots_ocr"; modeling_dots_ocr.py: DotsOCRForCausalLM), built on transformers'
# Qwen2.5-VL classes so the weights stay tiny and real.
REMOTE_CONFIGURATION = '''\
"""Tiny dots.ocr-shaped configuration and processor (test fixture)."""

from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor


class DotsOCRConfig(Qwen2_5_VLConfig):
    model_type = "dots_ocr"


class DotsVLProcessor(Qwen2_5_VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, video_processor=None,
                 chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, video_processor,
                         chat_template=chat_template, **kwargs)
        self.image_token = "<|imgpad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
'''

REMOTE_MODELING = '''\
"""Tiny dots.ocr-shaped model (test fixture)."""

from transformers import Qwen2_5_VLForConditionalGeneration

from .configuration_dots import DotsOCRConfig


class DotsOCRForCausalLM(Qwen2_5_VLForConditionalGeneration):
    config_class = DotsOCRConfig

    def __init__(self, config):
        super().__init__(config)
        # Test hook: behave like a kernel this GPU has no code for.
        self.register_forward_pre_hook(_fail_with_attention)


def _fail_with_attention(model, args):
    if getattr(model.config, "fail_with_attention", None) == model.config._attn_implementation:
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")
'''

# The shape of DeepSeek-OCR's checkpoint: model_type "deepseek_vl_v2" (unknown
# to transformers), AutoModel in auto_map, a tokenizer but no processor, and an
# `infer(tokenizer, prompt, image_file, output_path, ...)` method that reads
# the image from a file and, with eval_mode=True, returns the decoded answer
# without its end token (deepseek-ai/DeepSeek-OCR, modeling_deepseekocr.py).
REMOTE_DEEPSEEK_MODELING = '''\
"""Tiny DeepSeek-OCR-shaped model with its own infer() (test fixture)."""

import os

from PIL import Image
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor


class DeepseekOCRConfig(Qwen2VLConfig):
    model_type = "deepseek_vl_v2"


class DeepseekOCRForCausalLM(Qwen2VLForConditionalGeneration):
    config_class = DeepseekOCRConfig

    def infer(self, tokenizer, prompt="", image_file="", output_path="", base_size=1024,
              image_size=640, crop_mode=True, test_compress=False, save_results=False,
              eval_mode=False):
        os.makedirs(output_path, exist_ok=True)
        image = Image.open(image_file).convert("RGB")
        vision = Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28)
        pixels = vision(images=[image], return_tensors="pt")
        count = int(pixels["image_grid_thw"][0].prod()) // 4
        text = prompt.replace("<image>", "<|vision_start|>" + "<|image_pad|>" * count + "<|vision_end|>")
        encoded = tokenizer(text, return_tensors="pt")
        output = self.generate(
            input_ids=encoded["input_ids"].to(self.device),
            attention_mask=encoded["attention_mask"].to(self.device),
            pixel_values=pixels["pixel_values"].to(self.device, self.dtype),
            image_grid_thw=pixels["image_grid_thw"].to(self.device),
            max_new_tokens=8,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
        )
        outputs = tokenizer.decode(output[0, encoded["input_ids"].shape[1]:])
        if outputs.endswith(tokenizer.eos_token):
            outputs = outputs[: -len(tokenizer.eos_token)]
        outputs = outputs.strip()
        if eval_mode:
            return outputs
'''
DEEPSEEK_SPECIALS = (
    *QWEN_SPECIALS,
    "<\uff5cend\u2581of\u2581sentence\uff5c>",
    "<|grounding|>",
    "<|ref|>",
    "<|/ref|>",
    "<|det|>",
    "<|/det|>",
)


def _tokenizer(specials: Sequence[str], eos: str, pad: str) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=360,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    backend.train_from_iterator(list(CORPUS) * 4, trainer)
    # After the learned vocabulary: token 0 stays an ordinary character.
    backend.add_special_tokens(list(specials))
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos, pad_token=pad)


def _ids(tokenizer: Any, tokens: Sequence[str]) -> dict[str, int]:
    return {token: int(tokenizer.convert_tokens_to_ids(token)) for token in tokens}


def _text_config(tokenizer: Any, ids: dict[str, int], eos: str, **extra: Any) -> dict[str, Any]:
    config = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids[eos],
        "pad_token_id": ids["<|endoftext|>"],
    }
    config.update(extra)
    return config


def _qwen_rope() -> dict[str, Any]:
    # head_dim 16: the three M-RoPE sections (time, height, width) sum to 16 / 2.
    return {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}


def _save(model: Any, processor: Any, directory: Path, eos_ids: Sequence[int], pad_id: int) -> None:
    model.generation_config.eos_token_id = list(eos_ids)
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


def _save_own_names(model: Any, directory: Path) -> None:
    """Write the weights under the names the model's own modules have.

    save_pretrained writes the checkpoint key names of the transformers class
    the tiny model was built from (Qwen2-VL, Qwen2.5-VL), which transformers
    maps back only for that model type; a model with its own code
    (trust_remote_code) loads the names its modules have.
    """
    from safetensors.torch import save_file

    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})


def _qwen2_vision() -> dict[str, Any]:
    return {
        "depth": 1,
        "embed_dim": 32,
        "hidden_size": 64,
        "num_heads": 2,
        "mlp_ratio": 2,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    }


def build_qwen2_vl(directory: Path) -> Path:
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _tokenizer(QWEN_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>")
    ids = _ids(tokenizer, QWEN_SPECIALS)
    config = Qwen2VLConfig(
        text_config=_text_config(tokenizer, ids, "<|im_end|>", rope_parameters=_qwen_rope()),
        vision_config=_qwen2_vision(),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    # A real checkpoint's default resolution range, scaled down: at most 16 image tokens.
    images = Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28)
    processor = Qwen2VLProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    _save(model, processor, directory, [ids["<|im_end|>"]], ids["<|endoftext|>"])
    return directory


def build_qwen2_5_vl(directory: Path) -> Path:
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _tokenizer(QWEN_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>")
    ids = _ids(tokenizer, QWEN_SPECIALS)
    config = Qwen2_5_VLConfig(
        text_config=_text_config(tokenizer, ids, "<|im_end|>", rope_parameters=_qwen_rope()),
        vision_config=_qwen2_5_vision(),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    _save(model, processor, directory, [ids["<|im_end|>"]], ids["<|endoftext|>"])
    return directory


def _qwen2_5_vision() -> dict[str, Any]:
    return {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 56,  # windowed attention in block 0, full attention in block 1
        "fullatt_block_indexes": [1],
    }


def build_qwen3_vl(directory: Path) -> Path:
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = _tokenizer(QWEN_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>")
    ids = _ids(tokenizer, QWEN_SPECIALS)
    rope = {
        "rope_type": "default",
        "rope_theta": 10000.0,
        "mrope_section": [2, 3, 3],
        "mrope_interleaved": True,
    }
    config = Qwen3VLConfig(
        text_config=_text_config(tokenizer, ids, "<|im_end|>", head_dim=16, rope_parameters=rope),
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 64,  # an 8x8 grid of learned positions
            "deepstack_visual_indexes": [0],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen3VLForConditionalGeneration(config)
    images = Qwen2VLImageProcessor(
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        min_pixels=4 * 32 * 32,
        max_pixels=16 * 32 * 32,
    )
    processor = Qwen3VLProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    _save(model, processor, directory, [ids["<|im_end|>"]], ids["<|endoftext|>"])
    return directory


def build_got_ocr2(directory: Path) -> Path:
    import torch
    from transformers import (
        GotOcr2Config,
        GotOcr2ForConditionalGeneration,
        GotOcr2ImageProcessor,
        GotOcr2Processor,
    )

    tokenizer = _tokenizer(GOT_SPECIALS, eos="<|endoftext|>", pad="<|endoftext|>")
    ids = _ids(tokenizer, GOT_SPECIALS)
    text = _text_config(tokenizer, ids, "<|endoftext|>", model_type="qwen2")
    config = GotOcr2Config(
        # The real input (1024 px, 16 px patches) so the processor's 256 image
        # tokens match; narrow and shallow so it stays fast.
        vision_config={
            "hidden_size": 16,
            "output_channels": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "mlp_dim": 32,
            "global_attn_indexes": [],
            "window_size": 14,
            "image_size": 1024,
            "patch_size": 16,
        },
        text_config=text,
        image_token_index=ids["<imgpad>"],
        # Untied (the real one ties them): with random tied weights the answer
        # echoes the prompt's last token, a newline, and decodes to nothing.
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = GotOcr2ForConditionalGeneration(config)
    images = GotOcr2ImageProcessor(size={"height": 1024, "width": 1024})
    processor = GotOcr2Processor(image_processor=images, tokenizer=tokenizer)
    # Like the real checkpoint, generation_config ends on <|endoftext|>; the
    # family adds <|im_end|>, which ends GOT's answers in practice.
    _save(model, processor, directory, [ids["<|endoftext|>"]], ids["<|endoftext|>"])
    return directory


def build_dots_ocr_remote(directory: Path) -> Path:
    """A trust_remote_code checkpoint: its config, processor and model classes live in
    configuration_dots.py / modeling_dots_ocr.py beside the weights, named by auto_map."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = _tokenizer(DOTS_SPECIALS, eos="<|endofassistant|>", pad="<|endoftext|>")
    ids = _ids(tokenizer, DOTS_SPECIALS)
    config = Qwen2_5_VLConfig(
        text_config=_text_config(
            tokenizer, ids, "<|endofassistant|>", rope_parameters=_qwen_rope()
        ),
        vision_config=_qwen2_5_vision(),
        image_token_id=ids["<|imgpad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|img|>"],
        vision_end_token_id=ids["<|endofimg|>"],
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config)
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=16 * 28 * 28),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=DOTS_CHAT_TEMPLATE,
    )
    _save(model, processor, directory, [ids["<|endofassistant|>"]], ids["<|endoftext|>"])
    _save_own_names(model, directory)

    (directory / "configuration_dots.py").write_text(REMOTE_CONFIGURATION)
    (directory / "modeling_dots_ocr.py").write_text(REMOTE_MODELING)
    _edit_json(
        directory / "config.json",
        lambda config: config.update(
            model_type="dots_ocr",
            architectures=["DotsOCRForCausalLM"],
            auto_map={
                "AutoConfig": "configuration_dots.DotsOCRConfig",
                "AutoModelForCausalLM": "modeling_dots_ocr.DotsOCRForCausalLM",
            },
        ),
    )
    _edit_json(
        directory / "processor_config.json",
        lambda config: config.update(
            processor_class="DotsVLProcessor",
            auto_map={"AutoProcessor": "configuration_dots.DotsVLProcessor"},
        ),
    )
    return directory


def build_deepseek_ocr_remote(directory: Path) -> Path:
    """A trust_remote_code checkpoint with no processor and its own infer() entry point."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    eos = DEEPSEEK_SPECIALS[len(QWEN_SPECIALS)]
    tokenizer = _tokenizer(DEEPSEEK_SPECIALS, eos=eos, pad="<|endoftext|>")
    ids = _ids(tokenizer, DEEPSEEK_SPECIALS)
    config = Qwen2VLConfig(
        text_config=_text_config(tokenizer, ids, eos, rope_parameters=_qwen_rope()),
        vision_config=_qwen2_vision(),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    _save(model, tokenizer, directory, [ids[eos]], ids["<|endoftext|>"])
    _save_own_names(model, directory)
    (directory / "modeling_deepseekocr.py").write_text(REMOTE_DEEPSEEK_MODELING)
    _edit_json(
        directory / "config.json",
        lambda config: config.update(
            model_type="deepseek_vl_v2",
            architectures=["DeepseekOCRForCausalLM"],
            auto_map={
                "AutoConfig": "modeling_deepseekocr.DeepseekOCRConfig",
                "AutoModel": "modeling_deepseekocr.DeepseekOCRForCausalLM",
            },
        ),
    )
    return directory


def _edit_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def make_brief(directory: Path, after: int = 3) -> None:
    """The end token's score grows a millionfold per token after `after` answer tokens."""
    _edit_json(
        directory / "generation_config.json",
        lambda generation: generation.update(exponential_decay_length_penalty=[after, 1e6]),
    )


def make_empty(directory: Path) -> None:
    """Only the end token(s) may be generated: every answer is empty."""
    config = json.loads((directory / "config.json").read_text())
    vocab_size = config.get("text_config", config)["vocab_size"]

    def suppress_all_but_the_end(generation: dict[str, Any]) -> None:
        stops = generation["eos_token_id"]
        stops = set(stops if isinstance(stops, list) else [stops])
        generation["suppress_tokens"] = [token for token in range(vocab_size) if token not in stops]

    _edit_json(directory / "generation_config.json", suppress_all_but_the_end)


def make_degenerate(directory: Path) -> None:
    """Zero lm_head: all logits tie, greedy decoding picks token 0 until the limit."""
    from safetensors.torch import load_file, save_file

    weights_path = directory / "model.safetensors"
    weights = load_file(str(weights_path))
    head = [name for name in weights if name.endswith("lm_head.weight")]
    if not head:
        raise ValueError(f"{weights_path}: no lm_head.weight (tied embeddings?)")
    for name in head:
        weights[name].zero_()
    save_file(weights, str(weights_path), metadata={"format": "pt"})


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "qwen2_vl": build_qwen2_vl,
    "qwen2_5_vl": build_qwen2_5_vl,
    "qwen3_vl": build_qwen3_vl,
    "got_ocr2": build_got_ocr2,
    "dots_ocr_remote": build_dots_ocr_remote,
    "deepseek_ocr_remote": build_deepseek_ocr_remote,
}


def tiny_model(kind: str, root: Path, behaviour: Behaviour = "normal") -> Path:
    """The folder of a tiny `kind` model under `root`, built on first use.

    `kind` is a key of BUILDERS. The folder name carries a random suffix for models
    with their own code: transformers imports that code as a module named
    after the folder, and two test runs must not share it.
    """
    marker_name = f"{kind}-{behaviour}"
    existing = sorted(root.glob(f"{marker_name}*/.built"))
    if existing:
        return existing[0].parent
    suffix = f"-{uuid.uuid4().hex[:8]}" if kind.endswith("_remote") else ""
    directory = root / f"{marker_name}{suffix}"
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    BUILDERS[kind](directory)
    if behaviour == "brief":
        make_brief(directory)
    elif behaviour == "empty":
        make_empty(directory)
    elif behaviour == "degenerate":
        make_degenerate(directory)
    elif behaviour == "sdpa_fails":
        _edit_json(
            directory / "config.json", lambda config: config.update(fail_with_attention="sdpa")
        )
    (directory / ".built").write_text("ok\n")
    return directory
