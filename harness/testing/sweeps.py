"""The smallest real sweep: the smoke experiment trimmed to one group.

``SMOKE_GIN`` with ``FAST_FLAGS``: one method (lossy speculative decoding)
at two α, 3 examples, 6 tokens, 2 calibration calls; one (T) group of 2
reference cells and 2 method cells, 3 compiled programs. Shared by the
runner, results-bucket and Ray executor tests.
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
SMOKE_GIN = os.path.join(REPO, "experiments", "smoke.gin")
FAST_FLAGS = ("--gin.METHODS=[@spec_decode_lossy/MethodGrid()]",
              "--gin.spec_decode_lossy/MethodGrid.alphas=[0.0, 1.0]",
              "--gin.multi30k_ende/TaskRun.num_examples=3",
              "--gin.MAX_DECODE_LEN=6", "--gin.CALIBRATION_CALLS=2")
