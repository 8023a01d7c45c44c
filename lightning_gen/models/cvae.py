"""Conditional VAE (seed 000): a class one-hot or an attribute multi-hot steers the decoder (and in v2 the encoder)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from jsonargparse.typing import PositiveInt
from lightning.pytorch.utilities import rank_zero_deprecation
from torch import nn
from torchvision.utils import make_grid

from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models.condition_grid import columns_for
from lightning_gen.models.conditioning import check_vocabulary, conditioner_for
from lightning_gen.models.conv_stacks import ConvEncoder
from lightning_gen.models.film_decoder import FiLMConvDecoder
from lightning_gen.models.vae import VAE
from lightning_gen.seeding import randn, randperm

AUXILIARY_NOISE = 1  # the purpose key of the auxiliary loss's stream (VAE.losses draws from the stream without one)

ConditionKind = Literal["class", "attributes"]


def condition_size(facts: DataFacts, kind: ConditionKind) -> int:
    """Width of the condition vector, read from the data facts; UserError when the dataset lacks that vocabulary."""
    check_vocabulary(kind, facts, "train the unconditional VAE (model.class_path lightning_gen.models.VAE)")
    return len(facts.class_names if kind == "class" else facts.attribute_names)


class CVAE(VAE):
    """VAE whose encoder (v2) and decoder see a condition vector.

    Args:
        variant: ``v1`` conditions only the decoder; ``v2`` also the encoder (joined to its flattened features).
        injection: ``concat`` joins the condition to z before the decoder's first dense layer (the seed's method);
            ``add`` projects it by a dense layer to ``latent_dim`` and adds it to z (the seed's future work);
            ``film`` joins it to z and also scales and shifts every decoder level by it (FiLM; no decoder dropout).
        conditioning: ``class`` (one-hot of batch["label"]) or ``attributes`` (multi-hot batch["attributes"]).
        class_loss_weight: weight of an auxiliary loss that makes prior samples recognisable as their condition:
            a small classifier learns the condition from the real images, and the decoder is trained to make
            its prior samples (z from N(0, I), random conditions) classified as requested (0 = off).
        condition: the old name of ``conditioning``, still read from configs and checkpoints written before the rename.
        latent_dim, and the other arguments: see VAE.
    """

    def __init__(
        self,
        data_facts: DataFacts | None = None,
        variant: Literal["v1", "v2"] = "v2",
        injection: Literal["concat", "add", "film"] = "concat",
        conditioning: ConditionKind = "class",
        latent_dim: PositiveInt = 128,
        class_loss_weight: float = 0.0,
        condition: ConditionKind | None = None,
        **kwargs: Any,
    ):
        if condition is not None:
            rank_zero_deprecation("model.condition is now model.conditioning (as in DDPM); rename it in the config.")
            conditioning = condition
        facts = DataFacts.coerce(data_facts)
        size = condition_size(facts, conditioning)
        # VAE.__init__ sizes its layers from these two attributes, so they are set before it runs.
        self.encoder_condition_size = size if variant == "v2" else 0
        self.decoder_condition_size = size if injection == "concat" else 0
        super().__init__(facts, latent_dim=latent_dim, **kwargs)
        # Checkpoints record the one name: an old "condition" becomes "conditioning" when such a run is saved again.
        self.hparams.pop("condition", None)
        self.hparams["conditioning"] = conditioning
        self.variant, self.injection, self.conditioning = variant, injection, conditioning
        self.conditioner = conditioner_for(conditioning, facts, type(self).__name__)
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

    # -- conditions: all of it through self.conditioner (lightning_gen.models.conditioning) ------------
    @property
    def condition_vocabulary(self) -> tuple[str, ...]:
        return self.conditioner.vocabulary

    def batch_condition(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.conditioner.batch_condition(batch)

    def condition_vector(self, condition: Any, batch_size: int) -> torch.Tensor:
        """Class indices (N,) become one-hot rows; attribute vectors (N×A) pass through; None is an error."""
        if condition is None:
            raise UserError(
                f"{type(self).__name__} needs a condition; pass --condition or --prompt with names from: "
                f"{', '.join(self.condition_vocabulary)}."
            )
        return self.conditioner.vector(condition, batch_size, self.device)

    def decode_logits(self, z: torch.Tensor, condition: Any = None) -> torch.Tensor:
        if self.injection == "film":
            return self.decoder(z, self.condition_vector(condition, len(z)).to(z.dtype))
        if self.condition_projection is not None:
            z = z + self.condition_projection(self.condition_vector(condition, len(z)).to(z.dtype))
        return super().decode_logits(z, condition)

    # -- the auxiliary classifier loss --------------------------------------------------------
    def losses(self, batch: dict[str, Any], sample_latent: bool) -> dict[str, torch.Tensor]:
        out = super().losses(batch, sample_latent)
        if self.auxiliary_classifier is None or not sample_latent:
            return out  # training only: evaluation draws no random numbers (see VAE._score)
        condition = self.batch_condition(batch)
        classifier_loss = self.conditioner.classifier_loss
        real = classifier_loss(self.auxiliary_classifier(batch["image"]), condition)
        # Prior samples for the batch's conditions in shuffled order; the classifier is read with detached
        # weights so this term trains only the decoder (the classifier learns from real images alone).
        # Their randomness is this rank's and this batch's (seeding.py), never the global RNG every rank shares.
        generator = self.training_generator(AUXILIARY_NOISE)
        shuffled = condition[randperm(len(condition), generator, condition.device)]
        z = randn((len(shuffled), self.latent_dim), generator, self.device).to(batch["image"].dtype)
        images = torch.sigmoid(self.decode_logits(z, shuffled))
        frozen = {name: value.detach() for name, value in self.auxiliary_classifier.named_parameters()}
        fake = classifier_loss(torch.func.functional_call(self.auxiliary_classifier, frozen, (images,)), shuffled)
        out["loss"] = out["loss"] + real + self.class_loss_weight * fake
        out["class_loss"] = fake
        return out

    def spread_conditions(self, n: int) -> torch.Tensor:
        """n conditions cycling evenly over the vocabulary: class i, or attribute i alone."""
        return self.conditioner.spread(n, self.device)

    def condition_from_names(self, names: Sequence[str], n: int | None = None) -> torch.Tensor:
        """A class (one name for all ``n`` samples, or one per sample) or the named attributes together, for ``n`` samples."""
        return self.conditioner.from_names(names, n, self.device)

    def condition_from_prompt(self, prompt: str, n: int | None = None) -> torch.Tensor:
        """The class or attributes a free-text prompt names (word matching, see prompt_attributes)."""
        return self.conditioner.from_prompt(prompt, n, self.device)

    def condition_names(self, condition: Any) -> list[str]:
        return self.conditioner.names(condition)

    # -- grids --------------------------------------------------------------------------------
    def grid_conditions(self, batch: dict[str, Any]) -> torch.Tensor:
        """Rows of the condition grid: every class, or every attribute alone (a fixed subset beyond 40: see condition_grid)."""
        return self.conditioner.grid_conditions(batch, self.device)

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
