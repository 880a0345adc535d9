"""Helpers for the *usps-cnn-book* reproduction, in layers (a module imports only those above it here).

Foundations:

- :mod:`helpers._tf`: TensorFlow and Keras, imported once with the book's thread settings.
- :mod:`helpers.data`: find, verify and parse the USPS files; splits and folds.
- :mod:`helpers.paper`: the numbers the paper publishes, and the published results on this split.
- :mod:`helpers.config`: the training configuration, the run profiles, the decisions and ladders.
- :mod:`helpers.stats`: Wilson and Student-t intervals, the t-test, the exact McNemar test.
- :mod:`helpers.cache`: an atomic, checksummed, locked on-disk cache.

Training and its evidence:

- :mod:`helpers.model`: the network; :mod:`helpers.train`: fit and predict (the training core).
- :mod:`helpers.codehash`, :mod:`helpers.job`: what names a run, and what determines its model (the code hash).
- :mod:`helpers.store`: a run's entry in the results ledger; :mod:`helpers.cluster`: training on Dask.
- :mod:`helpers.trainer`: the TensorFlow side of a run (training it, a stored run's model).
- :mod:`helpers.runs`: where a result comes from (ledger -> cache -> training); reading needs no TensorFlow.
- :mod:`helpers.recipe`: the paper's open choices, made on holdout splits.
- :mod:`helpers.baselines`: k-nearest neighbours, logistic regression, an RBF SVM.
- :mod:`helpers.ledger`: the committed results ledger as a whole: checks, pruning, retrain comparison.
- :mod:`helpers.rounds`: the rounds of the best-published search: one selection engine (candidates,
  cross-validation, the rule, the look at the test set), each round a data entry, rounds 3 and 4 as their
  committed protocols (``protocols/``) say (:mod:`helpers.best_published` prints rounds 1 and 2).
- :mod:`helpers.experiments`: what the book trains, with the one registry of its runs.

For the chapters and the command line:

- :mod:`helpers.evaluate`: metrics, intervals and comparison tables; :mod:`helpers.plots`: the figures.
- :mod:`helpers.discussion`, :mod:`helpers.best_published`, :mod:`helpers.findings` (the introduction's
  summary), :mod:`helpers.testlog`, :mod:`helpers.demo`: one chapter each.
- :mod:`helpers.book`: the numbers the text quotes, provenance, guarded claims and the setup cell; :mod:`helpers.notebooks`
  and :mod:`helpers.stamp`: the notebooks' code stamp; ``python -m helpers``: the command line.
"""
