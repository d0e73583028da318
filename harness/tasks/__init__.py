"""Benchmark tasks: the paper's datasets, prompts, limits and metrics.

Task names (``python -m harness list`` prints them with limits and metrics):

* T5 fine-tuned tasks: ``wmt14_ende``, ``xsum``, ``cnn_dailymail``.
* Gemma few-shot tasks: ``gemma_wmt14_ende_5shot``, ``gemma_cnn_dailymail``
  (0-shot), ``gemma_gsm8k_8shot``, ``gemma_mbpp_3shot``, ``gemma_squad_v2``
  (0-shot), ``gemma_webquestions_1shot``, ``gemma_nq_open_1shot``,
  ``gemma_triviaqa`` (1-shot).
* ``multi30k_ende``: the embedded default for tiny CPU models.

Shots stated by the paper: WMT 5, GSM8K 8, WebQuestions 1, NQ 1. Shots for
CNN/DM, MBPP, SQuAD 2.0 and TriviaQA are a documented choice (``prompts.py``).

Two paths:

* seqio-free (``load_examples``): offline from bundled files (default) or
  from prepared TFDS datasets (``source="tfds", data_dir=...``).
* seqio (``harness.tasks.seqio_tasks.register_tasks``), imported only when
  needed because ``import seqio`` costs seconds and ~1 GB.

Example::

  from harness import tasks
  examples = tasks.load_examples("gemma_gsm8k_8shot", num_examples=1000)
  spec = tasks.get_task("gemma_gsm8k_8shot")  # spec.max_output_len == 320
"""

from harness.tasks.datasets import DATA_DIR_ENV, data_root
from harness.tasks.registry import (SHOT_POOL_SIZE, TASKS,
                                    available_examples, get_task,
                                    load_examples, postprocess, select_shots,
                                    stop_strings, typical_input_len,
                                    typical_output_len)
from harness.tasks.spec import (TASK_VERSION, DataError, Example,
                                OfflineSource, PromptFormat, Source, TaskSpec,
                                TfdsSource)

__all__ = [
    "DATA_DIR_ENV", "SHOT_POOL_SIZE", "DataError", "Example", "OfflineSource",
    "PromptFormat", "Source", "TASKS", "TASK_VERSION", "TaskSpec",
    "TfdsSource", "available_examples", "data_root", "get_task",
    "load_examples", "postprocess", "select_shots", "stop_strings",
    "typical_input_len",
    "typical_output_len",
]
