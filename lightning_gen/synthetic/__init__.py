"""Synthetic datasets: ``export`` writes a generated ImageFolder, ``downstream`` measures whether it helps a classifier."""
