"""Text conditioning: a frozen T5 encoder and a disk cache of caption embeddings (shared infrastructure)."""

from lightning_gen.text.cache import CaptionEmbeddingCache
from lightning_gen.text.t5 import DEFAULT_TEXT_ENCODER, FrozenT5, text_embedding_dim

__all__ = ["CaptionEmbeddingCache", "DEFAULT_TEXT_ENCODER", "FrozenT5", "text_embedding_dim"]
