"""The key under which lightning_gen records its own facts in a Lightning checkpoint (model class, data facts, run records)."""

CHECKPOINT_KEY = "lightning_gen"
