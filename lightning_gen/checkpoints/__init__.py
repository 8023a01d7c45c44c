"""Checkpoints: files that survive a killed session (``files``), safe loading and class lookup (``loading``,
``classes``), weights-only snapshots (``snapshots``) and the callbacks that save them (``callbacks``: last.ckpt and the
best checkpoint, ``run_end``: the save at every stop, ``snapshot_callback``). ``keys`` is the one constant every
side shares. Import the submodule you need; this package imports nothing at import time.
"""
