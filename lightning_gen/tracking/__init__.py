"""Loggers (W&B by default, TensorBoard/CSV as alternatives) and image logging through whichever is active."""
