"""What commands, metrics, synthetic data and the app share when they use a trained model.

One module per piece, each written against ``lightning_gen.protocol`` alone:
``devices`` (``--device auto``), ``loading`` (a model from a checkpoint or weights snapshot, on a device),
``conditions`` (a condition from ``--condition`` names or a ``--prompt``), ``sampling`` (the sampling
options a command passes, checked against the model's ``sampling_options()``), ``codec`` (the latent codec
of ``mix``/``edit``/the app), ``directions`` (a checkpoint's attribute directions), ``datamodules`` (a
datamodule from a config's data section) and ``memory`` (which option sets how many images are in memory).

Nothing is imported here, so that a module of the library can use one piece without loading the rest.
"""
