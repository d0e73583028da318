"""Fixtures for the tests, the fault suite and the docs' examples.

* :mod:`harness.testing.bigram` — bigram toy pairs, exact continuation
  distributions and a chi-square goodness-of-fit check (exactness tests).
* :mod:`harness.testing.results` — a synthetic results directory in the
  runner's schema (report tests and examples).
* :mod:`harness.testing.tokenizers` — tiny SentencePiece models trained on
  synthetic text.
* :mod:`harness.testing.ray_jobs` — model-free jobs for the Ray executor's
  scheduling tests.
* :mod:`harness.testing.sweeps` — the smoke experiment trimmed to one
  group (runner, bucket and Ray tests).
* :mod:`harness.testing.estimates` — a chip and a footprint with round
  numbers (the estimate's and the placement's hand arithmetic).

The library itself never imports this package (``tests/test_fixtures.py``
checks it); the tiny model sizes are library sizes
(``harness.models.configs.TINY_T5`` etc.).
"""
