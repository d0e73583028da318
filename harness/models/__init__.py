"""Models: T5 v1.1 and Gemma 2/3 behind the decoding protocol, plus loading.

Public API:
  T5, Gemma: model classes (pytrees implementing `DecodingModel`).
  T5Config, GemmaConfig, get_config: architecture configs and real sizes.
  random_t5, random_gemma: tiny random models for tests and benchmarks.
  load_pretrained, save_pretrained: checkpoints (Hugging Face formats,
    GGUF), loaded straight into a mesh; open_checkpoint reads no weights.
  Tokenizer, check_same_tokenizer, check_same_vocabulary: SentencePiece
    wrapper and pair checks.
"""

from harness.models.configs import (AttentionType, GemmaConfig, T5Config,
                                    get_config)
from harness.models.gemma import Gemma, GemmaCache, random_gemma
from harness.models.t5 import T5, T5Cache, random_t5
from harness.models.loading import (load_pretrained, open_checkpoint,
                                    save_pretrained)
from harness.models.tokenizer import (Tokenizer, check_same_tokenizer,
                                      check_same_vocabulary, encode_prompt,
                                      stop_token_sequences)
from harness.models.weights import Checkpoint, Pretrained
