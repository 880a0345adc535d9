"""Helpers for the *usps-cnn-book* reproduction.

One module per job:

- :mod:`helpers.data`: find, verify and parse the USPS files.
- :mod:`helpers.paper`: the numbers the paper publishes.
- :mod:`helpers.config`: the training configuration and the run profiles.
- :mod:`helpers.model`: the paper's convolutional network.
- :mod:`helpers.cache`: an atomic, checksummed, locked on-disk cache.
- :mod:`helpers.train`: training with compact progress, cached by everything that determines it.
- :mod:`helpers.evaluate`: metrics, confidence intervals and comparison tables.
- :mod:`helpers.plots`: the paper's figures.
"""
