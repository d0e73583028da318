"""The experiment runner: sweeps of decoding methods with timing and results.

Steps (one module each): ``config`` (frozen experiment dataclasses) →
``cells`` (the sweep's cell list) → ``pairs`` (load models) →
``calibration`` (cost model) → ``execute`` (decode and time one cell) →
``summary`` (quality, latency, rates) → ``harness.results.store`` (atomic
results files).
``runner.run_experiment`` strings them together; ``gin_config`` and ``cli``
are the gin / command-line edges. The results schema, store and merge are
in ``harness.results``.
"""
