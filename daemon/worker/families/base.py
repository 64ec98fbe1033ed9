"""What every model family shares: prompt, processor call, batched generate, decode.

A family knows how one kind of model wants to be asked (chat template or its
own prompt format, image size knobs), which transformers classes load it,
which tokens end its answer, and how to turn its raw answer into text and
layout blocks. The engine (`engines/hf_vlm.py`) knows everything else:
loading, devices, attention fallback and the output checks. The remote
engine (`engines/openai.py`) asks a server with the same prompts and reads
its answers with the same parsers, so nothing here imports torch at module
level: it is imported inside the methods that run a local model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

from daemon.protocol import Block

Size = tuple[int, int]  # width, height in pixels


PROBE_PAGE_SIZE = (112, 112)


class FamilyError(ValueError):
    """A family cannot be used as configured (unknown mode, missing processor...)."""


class NonFiniteLogitsError(RuntimeError):
    """The model's logits hold NaN or inf: its answers would be noise."""


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """The per-call knobs that come from the model's settings."""

    max_new_tokens: int
    min_pixels: int | None = None
    max_pixels: int | None = None


@dataclass(frozen=True, slots=True)
class Generated:
    """One page's answer, before any checks or post-processing."""

    token_ids: list[int]  # the answer's tokens, stop token excluded
    stopped: bool | None  # True: ended on a stop token; False: ran into the limit; None: unknown
    text: str  # decoded answer
    model_size: Size | None = None  # the image as the model saw it (after resizing)
    prompt_tokens: int | None = None

    @property
    def token_count(self) -> int:
        """Generated tokens, the stop token included (it was generated too)."""
        return len(self.token_ids) + (1 if self.stopped else 0)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A page's answer made into what the outputs need."""

    text: str
    blocks: tuple[Block, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)


def tokenizer_of(processor: Any) -> Any:
    """Processors carry a tokenizer; remote-code models sometimes ship only a tokenizer."""
    return getattr(processor, "tokenizer", processor)


class Family:
    """The generic image-text-to-text family: chat template, one image, one prompt."""

    name: ClassVar[str] = "generic"
    prompts: ClassVar[dict[str, str]] = {
        "plain": "Read all the text in this image, in reading order. Output only the text.",
    }
    default_mode: ClassVar[str] = "plain"
    # transformers auto classes, in the order they are tried.
    auto_classes: ClassVar[tuple[str, ...]] = (
        "AutoModelForImageTextToText",
        "AutoModelForCausalLM",
    )
    # Tokens that end an answer besides the model's own eos_token_id.
    stop_tokens: ClassVar[tuple[str, ...]] = ()
    # Keep special tokens when decoding (answers whose markup is made of them).
    keep_special_tokens: ClassVar[bool] = False

    def __init__(self, mode: str | None = None, prompt: str | None = None) -> None:
        chosen = mode or self.default_mode
        if chosen not in self.prompts:
            raise FamilyError(
                f"family {self.name!r} has no mode {chosen!r}; choose one of {sorted(self.prompts)}"
            )
        self.mode = chosen
        self.prompt = prompt if prompt is not None else self.prompts[chosen]

    # --- loading ---------------------------------------------------------------

    def load_processor(self, directory: str, *, trust_remote_code: bool) -> Any:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(
            directory, local_files_only=True, trust_remote_code=trust_remote_code
        )
        prepare_tokenizer(tokenizer_of(processor))
        return processor

    # --- asking ------------------------------------------------------------------

    def conversation(self) -> list[dict[str, Any]]:
        return [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": self.prompt}],
            }
        ]

    def prompt_text(self, processor: Any) -> str:
        """The text part of the model input for one page, image placeholder included."""
        if getattr(processor, "chat_template", None) or getattr(
            tokenizer_of(processor), "chat_template", None
        ):
            text: str = processor.apply_chat_template(
                self.conversation(), tokenize=False, add_generation_prompt=True
            )
            return text
        return self.prompt

    def image_kwargs(self, processor: Any, request: GenerationRequest) -> dict[str, Any]:
        """Processor keyword arguments that bound the image size (family specific)."""
        return {}

    def build_inputs(
        self, processor: Any, images: Sequence[Image.Image], request: GenerationRequest
    ) -> Any:
        text = self.prompt_text(processor)
        return processor(
            text=[text] * len(images),
            images=list(images),
            padding=True,
            return_tensors="pt",
            **self.image_kwargs(processor, request),
        )

    def model_sizes(self, processor: Any, inputs: Any, count: int) -> list[Size | None]:
        """The size of each image as the model saw it, where the processor tells."""
        return [None] * count

    # --- answering ---------------------------------------------------------------

    def stop_token_ids(self, processor: Any, model: Any) -> list[int]:
        ids: list[int] = []
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        if isinstance(configured, int):
            ids.append(configured)
        elif configured:
            ids.extend(int(token) for token in configured)
        tokenizer = tokenizer_of(processor)
        if getattr(tokenizer, "eos_token_id", None) is not None:
            ids.append(int(tokenizer.eos_token_id))
        # Token by token, round-tripped to tell a real token from the unknown
        # token's id: get_vocab() would build a dict of the whole vocabulary
        # (150,000 entries for Qwen, ~0.1 s) on every generate call.
        for token in self.stop_tokens:
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id is not None and tokenizer.convert_ids_to_tokens(token_id) == token:
                ids.append(int(token_id))
        return sorted(set(ids))

    def generate(
        self,
        model: Any,
        processor: Any,
        images: Sequence[Image.Image],
        request: GenerationRequest,
    ) -> list[Generated]:
        """All pages in one batched, greedy `generate` call (left-padded prompts)."""
        import torch  # here, not at the top: the remote engine shares this module without torch

        inputs = self.build_inputs(processor, images, request)
        sizes = self.model_sizes(processor, inputs, len(images))
        inputs = inputs.to(model.device)
        inputs = inputs.to(model.dtype)  # floating tensors only (pixel values)
        stop_ids = self.stop_token_ids(processor, model)
        tokenizer = tokenizer_of(processor)
        pad_id = tokenizer.pad_token_id
        if pad_id is None:
            pad_id = stop_ids[0] if stop_ids else None
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=request.max_new_tokens,
                do_sample=False,
                eos_token_id=stop_ids or None,
                pad_token_id=pad_id,
            )
        # Decoder-only models return prompt + answer; encoder-decoders return the
        # decoder's start token + answer.
        encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        prompt_length = 1 if encoder_decoder else int(inputs["input_ids"].shape[1])
        attention = inputs.get("attention_mask")
        results = []
        for row, size in zip(range(len(images)), sizes, strict=True):
            answer = output[row, prompt_length:].tolist()
            content, stopped = cut_at_stop(answer, stop_ids)
            prompt_tokens = (
                int(attention[row].sum())
                if attention is not None
                else int(inputs["input_ids"].shape[1])
            )
            results.append(
                Generated(
                    token_ids=content,
                    stopped=stopped,
                    text=self.decode(processor, content),
                    model_size=size,
                    prompt_tokens=prompt_tokens,
                )
            )
        return results

    def probe(self, model: Any, processor: Any, request: GenerationRequest) -> None:
        """Prove the loaded model runs here: one forward pass with finite logits, then
        a short generate, both on a small blank page (raises when it does not)."""
        import torch

        page = Image.new("RGB", PROBE_PAGE_SIZE, "white")
        inputs = self.build_inputs(processor, [page], request).to(model.device)
        inputs = inputs.to(model.dtype)
        with torch.inference_mode():
            output = model(**inputs)
        logits = getattr(output, "logits", None)
        if logits is not None and not bool(torch.isfinite(logits[:, -1]).all()):
            raise NonFiniteLogitsError(
                f"non-finite logits in {model.dtype} (try dtype = 'bfloat16' or 'float32')"
            )
        self.generate(model, processor, [page], request)

    def decode(self, processor: Any, token_ids: list[int]) -> str:
        text: str = tokenizer_of(processor).decode(
            token_ids, skip_special_tokens=not self.keep_special_tokens
        )
        return text

    def parse(self, text: str, page_size: Size, model_size: Size | None) -> Parsed:
        """The answer as page text (and blocks where the family gives structure)."""
        return Parsed(text=text.strip())

    # --- asking a server (engines/openai.py) ---------------------------------------

    def server_prompt(self) -> str:
        """The text sent beside the image in a chat-completions request.

        The server applies the model's chat template and places the image;
        only the prompt itself travels.
        """
        return self.prompt

    def server_image_size(self, page_size: Size, request: GenerationRequest) -> Size | None:
        """The size to send the page at so the server does not resize it again (None: as is).

        Families whose answers hold boxes in the model's pixels need to know
        that size; the others leave resizing to the server.
        """
        return None


def prepare_tokenizer(tokenizer: Any) -> None:
    """Left padding, so every prompt of a batch ends where its answer begins."""
    tokenizer.padding_side = "left"
    if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None):
        tokenizer.pad_token = tokenizer.eos_token


def cut_at_stop(answer: list[int], stop_ids: Sequence[int]) -> tuple[list[int], bool]:
    """The answer up to its first stop token, and whether there was one."""
    stops = set(stop_ids)
    for position, token in enumerate(answer):
        if token in stops:
            return answer[:position], True
    return answer, False
