"""A callback for the 2-process tests: each rank saves what it saw, for the test to compare across ranks.

Listed in trainer.callbacks by class path (the test puts tests/ on PYTHONPATH of the launched processes).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_gen.callbacks.ema import EMA
from lightning_gen.compat import averaged_model
from lightning_gen.data.augment import step_generator


class Probe(pl.Callback):
    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.seen: dict = {"metrics": {}}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0 and "training_noise" not in self.seen:
            # The generators the model's training_step and the augmentation draw from at this batch.
            self.seen["training_noise"] = torch.randn(8, generator=pl_module.training_generator())
            self.seen["augmentation"] = torch.rand(8, generator=step_generator(0, trainer.global_step, torch.device("cpu")))
            self.seen["first_batch_index"] = batch["index"].clone()

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.seen["metrics"] = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}

    def on_fit_end(self, trainer, pl_module):
        ema = next((callback for callback in trainer.callbacks if isinstance(callback, EMA)), None)
        if ema is not None:
            self.seen["ema"] = weights(averaged_model(ema).module)
        self.seen["world_size"] = trainer.world_size
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(self.seen, self.out_dir / f"rank{trainer.global_rank}.pt")


def weights(module: torch.nn.Module) -> dict:
    """A copy of the state_dict (tensors cloned; extra states such as the autoencoder's latent scale as they are)."""
    return {key: value.clone() if isinstance(value, torch.Tensor) else value for key, value in module.state_dict().items()}


class LatentProbe(Probe):
    """Probe of a LatentDiffusion fit: images each rank's encoder saw while building the cache and during steps, the
    cache file it read, its latent draws, and everything the first step used (weights, batch, generator, loss)."""

    def on_fit_start(self, trainer, pl_module):
        vae, self.encoded = pl_module.autoencoder.vae, 0
        original = vae.encode

        def counting(x, *args, **kwargs):
            self.encoded += len(x)
            return original(x, *args, **kwargs)

        vae.encode = counting

    def on_train_start(self, trainer, pl_module):  # runs before the model's own on_train_start, which builds the cache
        self.before_cache = self.encoded

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0 and "cache_encodes" not in self.seen:
            self.seen["cache_encodes"] = self.encoded - self.before_cache
            self.seen["cache_file"] = str(pl_module.latent_posteriors.location)
            rows = pl_module.latent_posteriors.rows[:4]
            self.seen["draws"] = pl_module.latent_posteriors.draw(rows, pl_module.training_generator(), torch.device("cpu"))
            self.seen["generator_state"] = pl_module.training_generator().get_state()
            self.seen["first_batch"] = {key: value.clone() for key, value in batch.items() if isinstance(value, torch.Tensor)}
            self.seen["initial_weights"] = weights(pl_module)
        self.step_start = self.encoded
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.setdefault("step_encodes", []).append(self.encoded - self.step_start)
        if trainer.global_step == 1 and "first_loss" not in self.seen:
            self.seen["first_loss"] = float(outputs["loss"])
            self.seen["weights_after_first_step"] = weights(pl_module)

    def on_fit_end(self, trainer, pl_module):
        self.seen["final_weights"] = weights(pl_module)
        self.seen["encoded_total"] = self.encoded
        super().on_fit_end(trainer, pl_module)


class PriorProbe(Probe):
    """Probe of a VAE with a fitted latent prior: at every validation (after the prior's refit on the codes gathered
    from both ranks) the images this rank kept, the weights that encoded them and the fitted density's state."""

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            images, _ = pl_module.latent_prior.kept()
            self.seen.setdefault("fits", []).append(
                {
                    "kept": images.clone(),
                    "weights": {key: value for key, value in weights(pl_module).items() if not key.startswith("latent_prior")},
                    "prior": pl_module.latent_prior.density.get_extra_state(),
                }
            )
