"""Using a model's latent space: interpolation (``mix``), attribute directions (``edit``)."""
