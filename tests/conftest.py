"""Test-wide environment: nothing writes to $HOME, TensorFlow stays quiet."""

import os
import tempfile

_TMP = tempfile.mkdtemp(prefix="harness-tests-")
for _var, _sub in (("KERAS_HOME", "keras"), ("MPLCONFIGDIR", "mpl"),
                   ("TFDS_DATA_DIR", "tfds")):
  os.environ.setdefault(_var, os.path.join(_TMP, _sub))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One persistent XLA cache for the fine-tuning runs of tests/test_finetune*.py:
# runs of identical shapes compile their training step once per session.
os.environ.setdefault("HARNESS_TEST_FINETUNE_XLA_CACHE",
                      os.path.join(_TMP, "finetune_xla"))
os.environ.setdefault("MPLBACKEND", "Agg")
