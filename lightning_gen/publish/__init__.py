"""Models that leave lightning_gen: diffusers pipeline folders, huggingface_hub folders, model cards, Hub uploads."""

from lightning_gen.publish.vae_export import PublishedModel

__all__ = ["PublishedModel"]
