"""LoRA fine-tuning of a DDPM's UNet through peft (``model.init_args.lora``).

The UNet becomes a ``peft.PeftModel``: the adapter's low-rank matrices train, every base weight is frozen
(``requires_grad`` False, so the optimizer and the EMA see only the adapter). The checkpoint holds base and
adapter weights, so a run resumes as it would without LoRA. ``publish`` writes the adapter alone (peft's
``adapter_config.json`` + ``adapter_model.safetensors``, loaded with ``PeftModel.from_pretrained(base_unet, folder)``;
the installed diffusers has no ``load_adapter`` on ``UNet2DModel``) or the merged UNet (``--merge_lora``).

In a YAML config::

    model:
      init_args:
        pretrained: google/ddpm-cat-256
        lora: {rank: 8, alpha: 8, target_modules: [to_q, to_k, to_v, to_out.0], dropout: 0.0}
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_info
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from lightning_gen.errors import UserError

LORA_KEYS = ("rank", "alpha", "target_modules", "dropout")
ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")  # the Linear layers of diffusers' Attention


def lora_config(settings: Mapping[str, Any]) -> LoraConfig:
    unknown = sorted(set(settings) - set(LORA_KEYS))
    if unknown:
        raise UserError(f"model.lora has unknown keys {', '.join(unknown)}; use {', '.join(LORA_KEYS)}.")
    rank, alpha = settings.get("rank", 8), settings.get("alpha", settings.get("rank", 8))
    targets = settings.get("target_modules", ATTENTION_PROJECTIONS)
    dropout = settings.get("dropout", 0.0)
    if isinstance(targets, str):
        targets = [targets]
    checks = [
        (isinstance(rank, int) and rank >= 1, f"model.lora.rank must be a whole number >= 1, got {rank}"),
        (isinstance(alpha, (int, float)) and alpha > 0, f"model.lora.alpha must be > 0, got {alpha}"),
        (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0, f"model.lora.dropout must be in [0, 1), got {dropout}"),
        (len(targets) > 0, "model.lora.target_modules must name at least one layer"),
    ]
    for ok, rule in checks:
        if not ok:
            raise UserError(f"{rule}; fix it in the model section of the config.")
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=float(dropout))


def with_lora(unet: nn.Module, settings: Mapping[str, Any] | None) -> nn.Module:
    """``unet`` with a LoRA adapter (a PeftModel whose base weights are frozen), or ``unet`` itself without settings."""
    if settings is None:
        return unet
    config = lora_config(settings)
    try:
        adapted = get_peft_model(unet, config)
    except ValueError as error:  # peft: "Target modules {...} not found in the base model"
        raise UserError(
            f"model.lora.target_modules {sorted(config.target_modules)} match no layer of the UNet; name its Linear or Conv2d "
            f"layers, e.g. {', '.join(ATTENTION_PROJECTIONS)} (the attention projections)."
        ) from error
    trainable = sum(parameter.numel() for parameter in adapted.parameters() if parameter.requires_grad)
    total = sum(parameter.numel() for parameter in adapted.parameters())
    rank_zero_info(
        f"model.lora: rank {config.r} adapter on {', '.join(sorted(config.target_modules))}; "
        f"{trainable:,} of {total:,} parameters train ({100 * trainable / total:.2f} %)."
    )
    return adapted


def has_lora(unet: nn.Module) -> bool:
    return isinstance(unet, PeftModel)


def merged_unet(unet: nn.Module) -> nn.Module:
    """A plain diffusers UNet with the adapter folded into its weights (``unet`` itself is left as it is)."""
    return copy.deepcopy(unet).merge_and_unload() if has_lora(unet) else unet


def save_adapter(unet: PeftModel, folder: str | Path, base_model: str | None = None) -> None:
    """peft's adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``), recording the base's location."""
    unet.peft_config["default"].base_model_name_or_path = base_model
    unet.save_pretrained(str(folder), safe_serialization=True)
