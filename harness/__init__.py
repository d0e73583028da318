"""Speculative-decoding benchmark harness.

``REPO_ROOT`` is the checkout this package lives in (shipped gin files,
experiments and bundled data are found relative to it); it is computed here
once, so that every floor of the library may use it.
"""

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
