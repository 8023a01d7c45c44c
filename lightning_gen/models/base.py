"""ModelBase: what every model shares — data facts, optimiser injection, checkpoint identity, training noise;
GenerativeModel: a ModelBase that generates, with the defaults of the model protocol (lightning_gen.protocol)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lightning_gen.checkpoints.keys import CHECKPOINT_KEY
from lightning_gen.compat import batches_fetched_in_run, logs_this_step
from lightning_gen.console.option_errors import check_optimizer
from lightning_gen.errors import UserError
from lightning_gen.facts import DataFacts
from lightning_gen.models.schedules import fit_schedule_to_run
from lightning_gen.protocol import SamplingOptions, has_latents
from lightning_gen.seeding import TRAINING_NOISE, derived_generator, process_rank, run_seed


class SharedOnCopy:
    """Wraps a configuration callable so that ``copy.deepcopy`` of the model shares it instead of copying it.

    The optimiser and scheduler factories jsonargparse builds hold its instantiator, which reaches the
    CLI and the trainer; the EMA copy (WeightAveraging deep-copies the module) must not copy those, and
    under DDP it cannot (the process group holds thread locks).
    """

    def __init__(self, factory: Any):
        self.factory = factory

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.factory(*args, **kwargs)

    def __deepcopy__(self, memo: dict) -> SharedOnCopy:
        return self


def attached_trainer(module: pl.LightningModule) -> pl.Trainer | None:
    """The module's trainer, or None outside one (``LightningModule.trainer`` raises RuntimeError then)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


class ModelBase(pl.LightningModule):
    """Base of every model, generative or not (the Judge is a classifier).

    Args:
        data_facts: image size, channels and condition vocabulary; linked from the datamodule by the
            CLI (never typed in a config) and stored in the checkpoint.
        optimizer: e.g. ``class_path: torch.optim.Adam`` with ``init_args: {lr: 1e-3}`` in the config.
        lr_scheduler: optional, e.g. ``lightning_gen.models.schedules.WarmupCosine``.
        scheduler_interval: whether the scheduler steps every optimizer ``step`` or every ``epoch``.
    """

    def __init__(
        self,
        data_facts: DataFacts | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["step", "epoch"] = "step",
    ):
        check_optimizer(optimizer)  # lr -1: one sentence naming model.init_args.optimizer.init_args.lr, before the run starts
        super().__init__()
        self.data_facts = DataFacts.coerce(data_facts)
        self._optimizer_factory = SharedOnCopy(optimizer)
        self._scheduler_factory = None if lr_scheduler is None else SharedOnCopy(lr_scheduler)
        self.scheduler_interval = scheduler_interval

    def save_model_hyperparameters(self) -> None:
        """save_hyperparameters() without the optimiser callables, with data facts as a plain dict."""
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"], logger=False)
        self.hparams["data_facts"] = self.data_facts.to_dict()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        facts = self.data_facts
        return (facts.channels, facts.image_size, facts.image_size)

    def configure_optimizers(self) -> Any:
        # Only what trains: frozen weights (a LoRA base UNet) would cost optimizer state and weight decay for nothing.
        optimizer = self._optimizer_factory([parameter for parameter in self.parameters() if parameter.requires_grad])
        if self._scheduler_factory is None:
            return optimizer
        scheduler = self._scheduler_factory(optimizer)
        # A run-length schedule gets the run's steps (max_steps/max_epochs) and its max_time; see models.schedules.
        fit_schedule_to_run(scheduler, self.trainer, self.scheduler_interval)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cls = type(self)
        checkpoint.setdefault(CHECKPOINT_KEY, {}).update(
            {"model_class": f"{cls.__module__}.{cls.__qualname__}", "data_facts": self.data_facts.to_dict()}
        )

    def log_training(self, metrics: dict[str, Any], batch_size: int, prog_bar: bool = False) -> None:
        """Training scalars, logged only on the steps Lightning writes to the loggers.

        Step-level values are written every ``log_every_n_steps``, and only that step's value is kept,
        so calling self.log on every other step only costs time (it was ~3 ms a step on the quickstart model).
        """
        trainer = attached_trainer(self)
        if trainer is None or logs_this_step(trainer):
            self.log_dict(metrics, batch_size=batch_size, prog_bar=prog_bar)

    def log_reconstruction_quality(self, stage: str, reconstruction: torch.Tensor, target: torch.Tensor, batch_size: int) -> None:
        """PSNR and SSIM of reconstructions in [0, 1] into ``self.psnr[stage]``/``self.ssim[stage]`` (torchmetrics,
        which reduce their sums across DDP ranks themselves when computed), logged as ``{stage}/psnr``, ``{stage}/ssim``."""
        psnr, ssim = self.psnr[stage], self.ssim[stage]
        psnr(reconstruction, target)
        ssim(reconstruction, target)
        self.log(f"{stage}/psnr", psnr, prog_bar=stage == "val", batch_size=batch_size)
        self.log(f"{stage}/ssim", ssim, batch_size=batch_size)

    def training_generator(self, *purpose: int) -> torch.Generator:
        """The random numbers of the current training batch (diffusion noise, VAE sampling): a function of
        (seed, DDP rank, batches trained), so ranks draw differently and a resumed run draws as an uninterrupted one.
        ``purpose`` keys give a second, unrelated stream of the same batch (e.g. CVAE's auxiliary loss)."""
        trainer = attached_trainer(self)
        batches = batches_fetched_in_run(trainer) if trainer is not None else 0
        return derived_generator(self.device, run_seed(), TRAINING_NOISE, process_rank(), batches, *purpose)


class GenerativeModel(ModelBase):
    """Base of every generator: the model protocol's defaults (lightning_gen.protocol), an unconditional one.

    A subclass adds ``sample`` (and where it applies ``latent_shape``/``encode``/``decode``/``reconstruct``,
    ``invert``) and overrides what it conditions on; then every command, grid and metric serves it.
    """

    conditioning: str = "none"

    def batch_condition(self, batch: dict[str, Any]) -> Any:
        """The condition this model reads from a batch; unconditional models read none."""
        return None

    @property
    def condition_vocabulary(self) -> tuple[str, ...]:
        """The class or attribute names a condition is made of; () for free text and for unconditional models."""
        return ()

    def sampling_options(self) -> SamplingOptions:
        """What ``sample`` takes beyond (n, condition, generator, initial_noise): nothing, by default."""
        return SamplingOptions(noise_shape=tuple(self.image_shape))

    def validation_grids(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """The model's own grids beside the samples and reconstructions the ImageGrids callback draws."""
        return {}

    def spread_conditions(self, n: int) -> Any:
        """n conditions cycling evenly over the vocabulary; None where there is none."""
        return None

    def condition_from_names(self, names: Sequence[str], n: int) -> Any:
        raise UserError(f"{type(self).__name__} here is unconditional (conditioning none); sample it without --condition.")

    def condition_from_prompt(self, prompt: str, n: int) -> Any:
        raise UserError(f"{type(self).__name__} here is unconditional (conditioning none); sample it without --prompt.")

    def condition_names(self, condition: Any) -> list[str]:
        return []

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """``predict``: reconstructions where the model has a latent space, else one sample per input's condition."""
        condition = self.batch_condition(batch)
        if has_latents(self):
            images = self.reconstruct(batch["image"], condition)
        else:
            generator = torch.Generator(device=self.device).manual_seed(batch_idx)
            images = self.sample(len(batch["image"]), condition=condition, generator=generator)
        return {"index": batch["index"], "image": images}
