"""Optional dependencies, imported where they are used.

The core (decoding, models, the bundled tasks, the metrics, the sweep, the
report and the bench) needs none of TensorFlow, seqio or TFDS. A TFDS
source, the seqio tasks and fine-tuning import them through :func:`require`,
so that their absence is one line naming what installs them.
"""

from __future__ import annotations

import importlib
import types

# Module -> the extra of pyproject.toml that installs it.
EXTRA_OF = {
    "tensorflow": "tfds",
    "tensorflow_datasets": "tfds",
    "tensorflow_text": "tfds",
    "seqio": "tfds",
    "ray": "ray",
}


class MissingExtraError(ImportError):
  """An optional dependency is not installed."""


def require(module: str, purpose: str) -> types.ModuleType:
  """Imports ``module``, or raises one line naming the extra to install.

  Args:
    module: the module's import name (a key of ``EXTRA_OF``).
    purpose: what needs it, for the message ("a TFDS source").
  """
  try:
    return importlib.import_module(module)
  except ImportError as err:
    extra = EXTRA_OF.get(module.split(".")[0], "tfds")
    raise MissingExtraError(
        f"{purpose} needs {module}, which is not installed: "
        f"pip install -e '.[{extra}]' (or make install)") from err
