"""Conditional VAE (seed 000): a class one-hot or an attribute multi-hot steers the decoder (and in v2 the encoder)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from jsonargparse.typing import PositiveInt
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchvision.utils import make_grid

from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models.condition_grid import columns_for, shown_conditions
from lightning_gen.models.conv_stacks import ConvEncoder
from lightning_gen.models.film_decoder import FiLMConvDecoder
from lightning_gen.models.prompt_attributes import attributes_in_prompt
from lightning_gen.models.vae import VAE

ConditionKind = Literal["class", "attributes"]


def condition_size(facts: DataFacts, kind: ConditionKind) -> int:
    """Width of the condition vector, read from the data facts; UserError when the dataset lacks that vocabulary."""
    names = facts.class_names if kind == "class" else facts.attribute_names
    if not names:
        what = "class labels" if kind == "class" else "attributes"
        raise UserError(
            f"model.condition is '{kind}' but the dataset (data facts: {facts.image_size}px, {facts.num_classes} classes, "
            f"{facts.num_attributes} attributes) has no {what}; choose a dataset with {what} or the other model.condition."
        )
    if kind == "class" and len(names) == 1:
        raise UserError(
            f"model.condition is 'class' but the dataset has one class ('{names[0]}'), so the condition tells the model nothing; "
            "give the data a second class (a second class folder, or another name in data.classes), or train the unconditional "
            "VAE (model.class_path lightning_gen.models.VAE)."
        )
    return len(names)


class CVAE(VAE):
    """VAE whose encoder (v2) and decoder see a condition vector.

    Args:
        variant: ``v1`` conditions only the decoder; ``v2`` also the encoder (joined to its flattened features).
        injection: ``concat`` joins the condition to z before the decoder's first dense layer (the seed's method);
            ``add`` projects it by a dense layer to ``latent_dim`` and adds it to z (the seed's future work);
            ``film`` joins it to z and also scales and shifts every decoder level by it (FiLM; no decoder dropout).
        condition: ``class`` (one-hot of batch["label"]) or ``attributes`` (multi-hot batch["attributes"]).
        class_loss_weight: weight of an auxiliary loss that makes prior samples recognisable as their condition:
            a small classifier learns the condition from the real images, and the decoder is trained to make
            its prior samples (z from N(0, I), random conditions) classified as requested (0 = off).
        latent_dim, and the other arguments: see VAE.
    """

    def __init__(
        self,
        data_facts: DataFacts | None = None,
        variant: Literal["v1", "v2"] = "v2",
        injection: Literal["concat", "add", "film"] = "concat",
        condition: ConditionKind = "class",
        latent_dim: PositiveInt = 128,
        class_loss_weight: float = 0.0,
        **kwargs: Any,
    ):
        facts = DataFacts.coerce(data_facts)
        size = condition_size(facts, condition)
        # VAE.__init__ sizes its layers from these two attributes, so they are set before it runs.
        self.encoder_condition_size = size if variant == "v2" else 0
        self.decoder_condition_size = size if injection == "concat" else 0
        super().__init__(facts, latent_dim=latent_dim, **kwargs)
        self.variant, self.injection, self.condition_kind = variant, injection, condition
        self.conditioning = condition
        self.condition_projection = nn.Linear(size, latent_dim) if injection == "add" else None
        if injection == "film":
            hp = self.hparams
            self.decoder = FiLMConvDecoder(
                latent_dim,
                size,
                facts.channels,
                hp.channels,
                facts.image_size,
                hp.decoder_dense,
                hp.batchnorm,
                hp.activation,
                hp.upsampling,
            )
        self.class_loss_weight = class_loss_weight
        self.auxiliary_classifier = None
        if class_loss_weight > 0:
            body = ConvEncoder(facts.channels, self.hparams.channels, facts.image_size)
            self.auxiliary_classifier = nn.Sequential(body, nn.Linear(body.out_features, size))

    # -- conditions ---------------------------------------------------------------------------
    @property
    def vocabulary(self) -> tuple[str, ...]:
        facts = self.data_facts
        return facts.class_names if self.condition_kind == "class" else facts.attribute_names

    @property
    def condition_vocabulary(self) -> tuple[str, ...]:
        return self.vocabulary

    def batch_condition(self, batch: dict[str, Any]) -> torch.Tensor:
        key = "label" if self.condition_kind == "class" else "attributes"
        if key not in batch:
            raise UserError(f"model.condition is '{self.condition_kind}' but the batches have no '{key}'; use a dataset with {key}s.")
        return batch[key]

    def condition_vector(self, condition: Any, batch_size: int) -> torch.Tensor:
        """Class indices (N,) become one-hot rows; attribute vectors (N×A) pass through; None is an error."""
        if condition is None:
            raise UserError(
                f"{type(self).__name__} needs a condition; pass --condition or --prompt with names from: {', '.join(self.vocabulary)}."
            )
        condition = torch.as_tensor(condition, device=self.device)
        if self.condition_kind == "class":
            vector = nn.functional.one_hot(condition.long().view(-1), len(self.vocabulary)).float()
        else:
            vector = condition.float().view(-1, len(self.vocabulary))
        if len(vector) == 1 and batch_size > 1:
            vector = vector.expand(batch_size, -1)
        return vector

    def decode_logits(self, z: torch.Tensor, condition: Any = None) -> torch.Tensor:
        if self.injection == "film":
            return self.decoder(z, self.condition_vector(condition, len(z)).to(z.dtype))
        if self.condition_projection is not None:
            z = z + self.condition_projection(self.condition_vector(condition, len(z)).to(z.dtype))
        return super().decode_logits(z, condition)

    # -- the auxiliary classifier loss --------------------------------------------------------
    def _classifier_loss(self, logits: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        if self.condition_kind == "class":
            return nn.functional.cross_entropy(logits, condition.long().view(-1))
        return nn.functional.binary_cross_entropy_with_logits(logits, condition.float())

    def losses(self, batch: dict[str, Any], sample_latent: bool) -> dict[str, torch.Tensor]:
        out = super().losses(batch, sample_latent)
        if self.auxiliary_classifier is None or not sample_latent:
            return out  # training only: evaluation draws no random numbers (see VAE._score)
        condition = self.batch_condition(batch)
        real = self._classifier_loss(self.auxiliary_classifier(batch["image"]), condition)
        # Prior samples for the batch's conditions in shuffled order; the classifier is read with detached
        # weights so this term trains only the decoder (the classifier learns from real images alone).
        shuffled = condition[torch.randperm(len(condition), device=condition.device)]
        z = torch.randn(len(shuffled), self.latent_dim, device=self.device, dtype=batch["image"].dtype)
        images = torch.sigmoid(self.decode_logits(z, shuffled))
        frozen = {name: value.detach() for name, value in self.auxiliary_classifier.named_parameters()}
        fake = self._classifier_loss(torch.func.functional_call(self.auxiliary_classifier, frozen, (images,)), shuffled)
        out["loss"] = out["loss"] + real + self.class_loss_weight * fake
        out["class_loss"] = fake
        return out

    def spread_conditions(self, n: int) -> torch.Tensor:
        """n conditions cycling evenly over the vocabulary: class i, or attribute i alone."""
        index = torch.arange(n, device=self.device) % len(self.vocabulary)
        if self.condition_kind == "class":
            return index
        return nn.functional.one_hot(index, len(self.vocabulary)).float()

    def condition_from_names(self, names: list[str], n: int) -> torch.Tensor:
        vocabulary = list(self.vocabulary)
        unknown = [name for name in names if name not in vocabulary]
        if unknown:
            raise UserError(
                f"--condition {', '.join(unknown)} is not a known {self.condition_kind} name; use one of: {', '.join(vocabulary)}."
            )
        if self.condition_kind == "class":
            if len(names) != 1:
                raise UserError(
                    f"--condition takes exactly one class name for this model, got {len(names)}; use one of: {', '.join(vocabulary)}."
                )
            return torch.full((n,), vocabulary.index(names[0]), dtype=torch.long, device=self.device)
        vector = torch.zeros(n, len(vocabulary), device=self.device)
        vector[:, [vocabulary.index(name) for name in names]] = 1.0
        return vector

    def condition_from_prompt(self, prompt: str, n: int) -> torch.Tensor:
        names = attributes_in_prompt(prompt, self.vocabulary)
        if self.condition_kind == "class" and len(names) > 1:
            # Class vocabularies may overlap ("red", "red circle"): the longest match is the one meant.
            names = [max(names, key=len)]
        rank_zero_info(f"Prompt understood as {self.condition_kind}: {', '.join(names)}")
        return self.condition_from_names(names, n)

    # -- grids --------------------------------------------------------------------------------
    def grid_conditions(self, batch: dict[str, Any]) -> torch.Tensor:
        """Rows of the condition grid: every class, or every attribute alone (a fixed subset beyond 40: see condition_grid)."""
        index = shown_conditions(len(self.vocabulary), self.device)
        if self.condition_kind == "class":
            return index
        return nn.functional.one_hot(index, len(self.vocabulary)).float()

    @torch.no_grad()
    def validation_grids(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One row per condition, one fixed z per column: if the condition controls the image, rows differ and columns agree."""
        conditions = self.grid_conditions(batch)
        rows = len(conditions)
        columns = columns_for(rows)
        # z from the model's prior (the fitted mixture when it has one), as its samples are drawn.
        z = self.sample_latents(columns, generator).to(self.device)
        images = self.decode(z.repeat(rows, 1), conditions.repeat_interleave(columns, 0))
        return {"conditions": make_grid(images.float(), nrow=columns, padding=1)}
