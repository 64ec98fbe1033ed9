"""A vision-language OCR model kept resident through transformers.

Loading fits the model to the machine (hardware.py): device, dtype, and the
first attention implementation that survives a real forward pass here; the
family (families/) decides how the model is asked and how its answer is
read. Pages of one call are answered by one batched, greedy `generate`.
An answer that is empty, or that loops to the token limit, is an error
(EmptyOutputError, DegenerateOutputError) for the fallback chain, not text.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import torch
from PIL import Image

from daemon.protocol import EngineInfo, GpuMemory, PageText
from daemon.settings import HfVlmModel
from daemon.worker import faults, hardware
from daemon.worker.engines.base import (
    DegenerateOutputError,
    EmptyOutputError,
    Engine,
    EngineError,
    Runtime,
)
from daemon.worker.families import build_family, detect_family
from daemon.worker.families.base import Family, FamilyError, Generated, GenerationRequest
from daemon.worker.families.locate import ModelLocation, locate_model, read_model_config
from daemon.worker.families.repetition import degenerate_period

log = structlog.get_logger("daemon.worker.engines.hf_vlm")

PROBE_NEW_TOKENS = 2


class NoModelClassError(EngineError):
    """No transformers auto class maps this model's config."""


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What loading would do, decided without loading anything (doctor shows it)."""

    location: ModelLocation
    config: dict[str, Any]
    family: str
    device: torch.device
    dtype: torch.dtype
    attention: tuple[str, ...]  # candidates, in the order they will be tried
    skipped: tuple[str, ...]  # candidates ruled out before loading, with the reason

    @property
    def own_code(self) -> bool:
        """The model ships its modeling code (auto_map in config.json)."""
        return bool(self.config.get("auto_map"))


class HfVlmEngine(Engine):
    def __init__(self, name: str, model: HfVlmModel, runtime: Runtime) -> None:
        super().__init__(name, runtime)
        self.settings = model
        self.model: Any = None
        self.processor: Any = None
        self.family: Family | None = None
        self.prompt = model.prompt  # the instruction the family was built with
        self.device = torch.device("cpu")
        self.info: EngineInfo | None = None

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    # --- loading -------------------------------------------------------------------

    def plan(self) -> LoadPlan:
        """Find the model and choose family, device, dtype and attention candidates."""
        location = locate_model(
            self.name,
            self.settings.path,
            revision=self.settings.revision,
            allow_download=self.runtime.allow_download,
        )
        config = read_model_config(location.directory)
        family: str = self.settings.family
        if family == "auto":
            family = detect_family(config)
        try:
            device = hardware.choose_device(self.runtime.device)
        except hardware.DeviceUnavailableError as error:
            raise EngineError(f"model {self.name!r}: {error}") from error
        dtype = hardware.choose_dtype(self.settings.dtype, device)
        attention, skipped = hardware.attention_candidates(self.settings.attention, device)
        return LoadPlan(
            location=location,
            config=config,
            family=family,
            device=device,
            dtype=dtype,
            attention=tuple(attention),
            skipped=tuple(skipped),
        )

    def load(self, plan: LoadPlan | None = None) -> EngineInfo:
        """Load as `plan` says (`ocr-inbox doctor` passes the one it reported), else plan now."""
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # per-shard bars would flood the logs
        if plan is None:
            plan = self.plan()
        if plan.own_code and not self.settings.trust_remote_code:
            raise EngineError(
                f"model {self.name!r} ships its own Python code (auto_map in "
                f"{plan.location.directory / 'config.json'}); read it, then set "
                f"trust_remote_code = true under [models.{self.name}] to run it"
            )
        try:
            family = build_family(plan.family, self.settings.mode, self.settings.prompt)
        except FamilyError as error:
            raise EngineError(f"model {self.name!r}: {error}") from error
        if self.runtime.threads > 0:
            torch.set_num_threads(self.runtime.threads)
        tf32 = hardware.enable_tf32(plan.device)
        directory = str(plan.location.directory)
        try:
            processor = family.load_processor(
                directory, trust_remote_code=self.settings.trust_remote_code
            )
        except (OSError, ValueError, TypeError, ImportError) as error:
            raise EngineError(
                f"model {self.name!r}: cannot load its processor/tokenizer from {directory}: {error}"
            ) from error

        self.family, self.processor, self.device = family, processor, plan.device
        self.prompt = self.settings.prompt
        fallbacks = list(plan.skipped)
        for attention in plan.attention:
            failure = self._try_attention(plan, family, attention)
            if failure is None:
                break
            fallbacks.append(f"{attention}: {failure}")
            log.warning("hf_vlm.attention_fallback", attention=attention, reason=failure)
        else:
            self.close()
            raise EngineError(
                f"model {self.name!r} runs with none of {list(plan.attention)} on "
                f"{plan.device}: " + "; ".join(fallbacks)
            )
        self.info = self._engine_info(plan, family, attention, fallbacks, tf32)
        log.info(
            "hf_vlm.loaded",
            family=family.name,
            device=self.info.device,
            dtype=self.info.dtype,
            attention=attention,
            fallbacks=fallbacks,
        )
        return self.info

    def _try_attention(self, plan: LoadPlan, family: Family, attention: str) -> str | None:
        """Load with this attention and prove it with a forward pass; the reason if not."""
        try:
            self.model = self._load_model(plan, family, attention)
            family.probe(self.model, self.processor, self._request(PROBE_NEW_TOKENS))
        except Exception as error:
            if faults.is_oom(error) or faults.cuda_error_kind(str(error)) is not None:
                raise  # not an attention problem: the worker's fault handling decides
            if isinstance(error, NoModelClassError):
                raise
            self._drop_model()
            # A kernel without code for this GPU ("no kernel image is available")
            # leaves the CUDA context usable; anything that poisoned it must not
            # be retried in this process.
            if not hardware.context_usable(plan.device):
                raise
            return f"{type(error).__name__}: {_first_line(error)}"
        return None

    def _load_model(self, plan: LoadPlan, family: Family, attention: str) -> Any:
        import transformers

        errors = []
        for class_name in model_classes(family, plan.config, self.settings.trust_remote_code):
            auto_class = getattr(transformers, class_name)
            try:
                model = auto_class.from_pretrained(
                    str(plan.location.directory),
                    dtype=plan.dtype,
                    attn_implementation=attention,
                    device_map={"": plan.device},
                    local_files_only=True,
                    trust_remote_code=self.settings.trust_remote_code,
                )
            except ValueError as error:
                if "Unrecognized configuration class" not in str(error):
                    raise
                errors.append(class_name)
                continue
            return model.eval()
        raise NoModelClassError(
            f"model {self.name!r}: no transformers class loads it (tried {', '.join(errors)}); "
            "set `family` for it, or it is not an image-text-to-text model"
        )

    def _engine_info(
        self,
        plan: LoadPlan,
        family: Family,
        attention: str,
        fallbacks: list[str],
        tf32: bool,
    ) -> EngineInfo:
        import transformers

        return EngineInfo(
            engine="hf_vlm",
            model=self.name,
            device=str(plan.device),
            dtype=hardware.dtype_name(plan.dtype),
            attention=attention,
            family=family.name,
            details={
                "path": str(plan.location.directory),
                "source": plan.location.source,
                "hub_id": plan.location.hub_id,
                "model_class": type(self.model).__name__,
                "parameters": sum(parameter.numel() for parameter in self.model.parameters()),
                "mode": family.mode,
                "custom_prompt": self.settings.prompt is not None,
                "max_new_tokens": self.settings.max_new_tokens,
                "batch_size": self.settings.batch_size,
                "min_pixels": self.settings.min_pixels,
                "max_pixels": self.settings.max_pixels,
                "trust_remote_code": self.settings.trust_remote_code,
                "tf32": tf32,
                "attention_fallbacks": fallbacks,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
            },
        )

    # --- recognising ---------------------------------------------------------------

    def _request(self, max_new_tokens: int) -> GenerationRequest:
        return GenerationRequest(
            max_new_tokens=max_new_tokens,
            min_pixels=self.settings.min_pixels,
            max_pixels=self.settings.max_pixels,
        )

    def begin_job(self, name: str, prompt: str | None = None) -> None:
        """Ask this document's pages with its inbox's prompt (the model's own when None).

        A family is only the way of asking and parsing, cheap to build; the
        loaded model and processor serve every prompt, so inboxes that differ
        only in their prompt share one resident model.
        """
        wanted = prompt if prompt is not None else self.settings.prompt
        if self.family is None or wanted == self.prompt:
            return
        try:
            self.family = build_family(self.family.name, self.settings.mode, wanted)
        except FamilyError as error:
            raise EngineError(f"model {self.name!r}: {error}") from error
        self.prompt = wanted

    def recognize(self, pages: Sequence[Image.Image]) -> list[PageText]:
        if self.model is None or self.family is None:
            raise EngineError(f"model {self.name!r} is not loaded")
        request = self._request(self.settings.max_new_tokens)
        results: list[PageText] = []
        for start in range(0, len(pages), self.batch_size):
            batch = list(pages[start : start + self.batch_size])
            began = time.perf_counter()
            answers = self.family.generate(self.model, self.processor, batch, request)
            seconds = time.perf_counter() - began
            for offset, (page, answer) in enumerate(zip(batch, answers, strict=True)):
                results.append(self._page_text(start + offset, page, answer, len(batch), seconds))
        return results

    def _page_text(
        self, index: int, page: Image.Image, answer: Generated, batch: int, seconds: float
    ) -> PageText:
        assert self.family is not None
        limit = self.settings.max_new_tokens
        if answer.stopped is not True:
            period = degenerate_period(answer.token_ids)
            if period is not None:
                raise DegenerateOutputError(
                    f"model {self.name!r}: the answer for page {index + 1} of this call repeats "
                    f"a {period}-token phrase until the limit of {limit} new tokens "
                    f"(ends with {answer.text[-60:]!r})"
                )
        if not answer.text.strip():
            raise EmptyOutputError(
                f"model {self.name!r} produced no text for page {index + 1} of this call "
                f"({answer.token_count} token(s) generated)"
            )
        parsed = self.family.parse(answer.text, page.size, answer.model_size)
        details: dict[str, Any] = {
            "mode": self.family.mode,
            "prompt_tokens": answer.prompt_tokens,
            "hit_token_limit": None if answer.stopped is None else not answer.stopped,
            "batch_pages": batch,
            "batch_seconds": round(seconds, 4),
        }
        if answer.model_size is not None:
            details["model_image_size"] = list(answer.model_size)
        details.update(parsed.details)
        return PageText(
            text=parsed.text, blocks=parsed.blocks, tokens=answer.token_count, details=details
        )

    # --- memory and lifetime -------------------------------------------------------

    def free_memory(self) -> None:
        hardware.release_cached_memory(self.device)

    def memory(self) -> tuple[GpuMemory, ...]:
        return hardware.memory_readings(self.device)

    def reset_peak(self) -> None:
        hardware.reset_peak(self.device)

    def _drop_model(self) -> None:
        self.model = None
        hardware.release_cached_memory(self.device)

    def close(self) -> None:
        self.model = None
        self.processor = None
        self.family = None
        hardware.release_cached_memory(self.device)


def model_classes(family: Family, config: dict[str, Any], trust_remote_code: bool) -> list[str]:
    """transformers auto classes to try: the ones the model's own code registers first."""
    preferred = list(family.auto_classes)
    auto_map = config.get("auto_map") or {}
    if not (trust_remote_code and isinstance(auto_map, dict) and auto_map):
        return preferred
    own = [name for name in preferred if name in auto_map]
    own += [name for name in auto_map if name.startswith("AutoModel") and name not in own]
    return own + [name for name in preferred if name not in own]


def _first_line(error: BaseException) -> str:
    """The gist of an error for logs and EngineInfo: its first line, first sentence if long."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    if len(line) > 200 and ". " in line[40:]:
        line = line[: line.index(". ", 40) + 1]
    return line[:300]
