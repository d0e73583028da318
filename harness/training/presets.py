"""Model sizes of the default pairs (T5 v1.1 and Gemma 2 architectures).

Each preset is the set of overrides applied to `T5Config` / `GemmaConfig`;
the vocabulary size comes from the tokenizer.
"""

from __future__ import annotations

from harness.models import GemmaConfig, T5Config
from harness.training.vocab import BOS_ID, EOS_ID, PAD_ID

T5_PRESETS: dict[str, dict] = {
    # Drafter: narrow, two encoder layers and one decoder layer.
    "small": dict(d_model=128, d_kv=32, d_ff=512, num_heads=4,
                  num_encoder_layers=2, num_decoder_layers=1),
    # Verifier: 3 + 3 layers, twice as wide (sized for the CPU budget).
    "large": dict(d_model=256, d_kv=64, d_ff=1024, num_heads=4,
                  num_encoder_layers=3, num_decoder_layers=3),
}

GEMMA_PRESETS: dict[str, dict] = {
    "small": dict(d_model=128, num_layers=2, num_heads=2, num_kv_heads=1,
                  head_dim=64, d_ff=512, query_pre_attn_scalar=64.0),
    "large": dict(d_model=192, num_layers=3, num_heads=3, num_kv_heads=1,
                  head_dim=64, d_ff=768, query_pre_attn_scalar=64.0),
}


def make_config(arch: str, size: str, vocab_size: int) -> T5Config | GemmaConfig:
  """The config of preset `size` ("small"/"large") of `arch` ("t5"/"gemma")."""
  presets = {"t5": T5_PRESETS, "gemma": GEMMA_PRESETS}
  if arch not in presets:
    raise ValueError(f"unknown architecture {arch!r}; expected t5 or gemma")
  if size not in presets[arch]:
    raise ValueError(f"unknown {arch} size {size!r}; known: "
                     f"{sorted(presets[arch])}")
  if arch == "t5":
    return T5Config(vocab_size=vocab_size, pad_id=PAD_ID, eos_id=EOS_ID,
                    **T5_PRESETS[size])
  # Gemma 2 style (LOCAL/GLOBAL alternation; windows cover every caption).
  return GemmaConfig(version=2, vocab_size=vocab_size, sliding_window=128,
                     pad_id=PAD_ID, eos_id=EOS_ID, bos_id=BOS_ID,
                     **GEMMA_PRESETS[size])
