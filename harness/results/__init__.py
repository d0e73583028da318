"""The results layer: what the runner writes and the report reads.

* ``schema``: the layout of ``results/<experiment>/`` and its record types.
* ``store``: atomic writes, completion markers and their integrity checks.
* ``latency``: the one definition of relative latency (paired or unpaired).
* ``merge``: shard manifests into one, relative latencies filled afterwards.
* ``storage``: where the files live: local paths, or a bucket (``gs://``)
  through fsspec.

It imports nothing from ``harness.runner`` or ``harness.report``; both
import it.
"""
