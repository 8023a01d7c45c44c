"""Files copied verbatim into a published diffusers folder: they import diffusers, torch and transformers only."""
