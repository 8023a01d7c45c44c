"""FrozenT5: a T5 encoder and its tokenizer from the local Hugging Face cache or a local directory, frozen."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from huggingface_hub.constants import HF_HUB_CACHE
from transformers import AutoConfig, AutoTokenizer, T5EncoderModel

from lightning_gen.errors import UserError

DEFAULT_TEXT_ENCODER = "google/t5-v1_1-base"
# Downloads are off unless asked for: a training run must not stall or fail half-way on a network call.
ALLOW_DOWNLOADS_ENV = "LIGHTNING_GEN_ALLOW_DOWNLOADS"


def downloads_allowed(allow_download: bool | None = None) -> bool:
    if allow_download is not None:
        return allow_download
    return os.environ.get(ALLOW_DOWNLOADS_ENV, "").strip().lower() in {"1", "true", "yes"}


def is_local_path(name: str) -> bool:
    """Hub names also contain '/', so a name counts as a path only if it looks like one or exists."""
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().is_dir()


def resolve_source(name: str) -> str:
    return str(Path(name).expanduser().resolve()) if is_local_path(name) else name


def encoder_fingerprint(name: str) -> str:
    """Short id of the encoder's weights: the name, plus file sizes and times for a local directory.

    A local directory can be rewritten with other weights under the same path (e.g. a regenerated
    tiny T5); its fingerprint then changes, so cached embeddings of the old weights are not reused.
    """
    digest = hashlib.sha256(resolve_source(name).encode())
    if is_local_path(name):
        directory = Path(resolve_source(name))
        for file in sorted(directory.glob("*")) if directory.is_dir() else []:
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:12]


def missing_encoder_error(name: str) -> UserError:
    if is_local_path(name):
        return UserError(
            f"Text encoder '{name}' could not be loaded from the directory '{resolve_source(name)}': it must hold a "
            f"T5 encoder and its tokenizer saved with save_pretrained (for a tiny offline one run "
            f"`python -m lightning_gen.text.tiny_t5 --out {name} --captions-from shapes`)."
        )
    return UserError(
        f"Text encoder '{name}' is not in the local Hugging Face cache '{HF_HUB_CACHE}' and downloads are off; "
        f"run `hf download {name}` on a machine with internet (and copy that cache here), set {ALLOW_DOWNLOADS_ENV}=1 "
        f"to allow the download, or point model.text_encoder at a local directory."
    )


def text_embedding_dim(name: str, allow_download: bool | None = None) -> int:
    """Width of the encoder's output, read from its config alone (no weights are loaded)."""
    try:
        config = AutoConfig.from_pretrained(resolve_source(name), local_files_only=not downloads_allowed(allow_download))
    except (OSError, ValueError) as error:
        raise missing_encoder_error(name) from error
    return int(config.d_model)


class FrozenT5:
    """T5 encoder + tokenizer in eval mode with no gradients.

    Deliberately not an ``nn.Module``: it can never be registered inside a LightningModule, so its
    weights stay out of checkpoints and Lightning never moves it onto the accelerator.

    Args:
        name: a hub name (default ``google/t5-v1_1-base``) or a local HF-format directory.
        allow_download: None reads the ``LIGHTNING_GEN_ALLOW_DOWNLOADS`` environment variable.
    """

    def __init__(self, name: str = DEFAULT_TEXT_ENCODER, allow_download: bool | None = None):
        self.name = name
        source, local_only = resolve_source(name), not downloads_allowed(allow_download)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            # float32: T5 v1.1 activations overflow in float16.
            self.model = T5EncoderModel.from_pretrained(source, local_files_only=local_only, dtype=torch.float32)
        except (OSError, ValueError) as error:
            raise missing_encoder_error(name) from error
        self.model.requires_grad_(False).eval()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> FrozenT5:
        self.model.to(device)
        return self

    @torch.no_grad()
    def encode(self, captions: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (embeddings float32 N×max_length×D, mask bool N×max_length), padded or truncated to max_length."""
        tokens = self.tokenizer(list(captions), padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        # Autocast off: the caller may be inside a mixed-precision step, and the cache keeps float32.
        with torch.autocast(self.device.type, enabled=False):
            embeddings = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        mask = mask.bool()
        return embeddings.float() * mask[..., None], mask
