"""Frozen architecture configs for T5 v1.1 and Gemma 2/3, and the real sizes.

Every published size is declared once, in :data:`T5_SIZES` and
:data:`GEMMA_SIZES`; :func:`get_config` looks them up by name. Configs are
frozen, hashable dataclasses: they are the static (auxiliary) data of a model
pytree, so two models with equal configs share one compiled program.
"""

from __future__ import annotations

import dataclasses
import enum


class AttentionType(enum.StrEnum):
  """Which keys a Gemma attention layer sees."""
  GLOBAL = "full_attention"  # every earlier position
  LOCAL = "sliding_attention"  # the last `sliding_window` positions only


@dataclasses.dataclass(frozen=True)
class T5Config:
  """T5 v1.1 encoder-decoder (gated-GELU, RMSNorm, relative position bias).

  Attributes:
    vocab_size: number of embedding rows and output logits.
    d_model: residual stream width.
    d_kv: per-head query/key/value width; the attention inner width is
      `num_heads * d_kv` and need not equal `d_model`.
    d_ff: hidden width of the gated feed-forward layer.
    num_heads: attention heads (no grouped-query attention in T5).
    num_encoder_layers: encoder blocks.
    num_decoder_layers: decoder blocks.
    num_buckets: relative-position buckets (per direction halves for the
      bidirectional encoder).
    max_distance: distance at which buckets stop growing logarithmically.
    layer_norm_eps: RMSNorm epsilon.
    tie_embeddings: output logits use the input embedding (no `lm_head`
      param). False for v1.1, True for v1.0.
    scale_logits: scale the decoder output by `d_model**-0.5` before the
      output layer (v1.0 behaviour, which goes with tied embeddings).
    gated_act: "gelu_tanh" (v1.1 gated-GELU) or "relu" (v1.0, ungated).
    pad_id: padding id, also the decoder start token.
    eos_id: end-of-sequence id.
  """
  vocab_size: int = 32128
  d_model: int = 512
  d_kv: int = 64
  d_ff: int = 1024
  num_heads: int = 6
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  num_buckets: int = 32
  max_distance: int = 128
  layer_norm_eps: float = 1e-6
  tie_embeddings: bool = False
  scale_logits: bool = False
  gated_act: str = "gelu_tanh"
  pad_id: int = 0
  eos_id: int = 1

  @property
  def decoder_start_id(self) -> int:
    return self.pad_id


@dataclasses.dataclass(frozen=True)
class GemmaConfig:
  """Gemma 2 / Gemma 3 decoder-only transformer.

  Attributes:
    version: 2 or 3; selects soft-capping (2) versus QK-norm (3).
    vocab_size: embedding rows = output logits (tied embedding).
    d_model: residual stream width (`hidden_size`).
    num_layers: transformer blocks.
    num_heads: query heads.
    num_kv_heads: key/value heads (grouped-query attention).
    head_dim: per-head width.
    d_ff: hidden width of the gated MLP (`intermediate_size`).
    query_pre_attn_scalar: attention logits are scaled by this ** -0.5.
    sliding_window: a LOCAL layer at query position q sees keys k with
      q - sliding_window < k <= q.
    attention_types: one `AttentionType` per layer.
    attn_logit_softcap: tanh soft-cap of attention logits (Gemma 2), or None.
    final_logit_softcap: tanh soft-cap of output logits (Gemma 2), or None.
    rope_base_global: RoPE base frequency of GLOBAL layers.
    rope_base_local: RoPE base frequency of LOCAL layers.
    rope_scale_global: linear RoPE position scaling factor of GLOBAL layers
      (8 for Gemma 3 4B+; 1 means none).
    use_qk_norm: RMSNorm on queries and keys per head (Gemma 3).
    rms_norm_eps: RMSNorm epsilon.
    pad_id: padding id.
    eos_id: end-of-sequence id.
    bos_id: beginning-of-sequence id.
  """
  version: int = 2
  vocab_size: int = 256000
  d_model: int = 2304
  num_layers: int = 26
  num_heads: int = 8
  num_kv_heads: int = 4
  head_dim: int = 256
  d_ff: int = 9216
  query_pre_attn_scalar: float = 256.0
  sliding_window: int = 4096
  attention_types: tuple[AttentionType, ...] = ()
  attn_logit_softcap: float | None = 50.0
  final_logit_softcap: float | None = 30.0
  rope_base_global: float = 10_000.0
  rope_base_local: float = 10_000.0
  rope_scale_global: float = 1.0
  use_qk_norm: bool = False
  rms_norm_eps: float = 1e-6
  pad_id: int = 0
  eos_id: int = 1
  bos_id: int = 2

  def __post_init__(self):
    if not self.attention_types:
      object.__setattr__(self, "attention_types", default_attention_types(
          self.version, self.num_layers))
    if len(self.attention_types) != self.num_layers:
      raise ValueError(
          f"attention_types has {len(self.attention_types)} entries for "
          f"{self.num_layers} layers")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"num_heads={self.num_heads} is not a multiple of "
                       f"num_kv_heads={self.num_kv_heads}")


# Gemma 3 alternates five LOCAL layers with one GLOBAL layer.
GEMMA3_LOCAL_PER_GLOBAL = 5


def default_attention_types(version: int,
                            num_layers: int) -> tuple[AttentionType, ...]:
  """Gemma 2: LOCAL, GLOBAL, LOCAL, ...; Gemma 3: 5 LOCAL then 1 GLOBAL."""
  period = 2 if version == 2 else GEMMA3_LOCAL_PER_GLOBAL + 1
  return tuple(AttentionType.GLOBAL if (i + 1) % period == 0
               else AttentionType.LOCAL for i in range(num_layers))


def _t5(d_model, d_ff, num_heads, num_layers) -> T5Config:
  return T5Config(d_model=d_model, d_ff=d_ff, num_heads=num_heads,
                  num_encoder_layers=num_layers, num_decoder_layers=num_layers)


def _gemma2(d_model, num_layers, num_heads, num_kv_heads, head_dim, d_ff,
            query_pre_attn_scalar) -> GemmaConfig:
  return GemmaConfig(
      version=2, vocab_size=256000, d_model=d_model, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=head_dim,
      d_ff=d_ff, query_pre_attn_scalar=query_pre_attn_scalar,
      sliding_window=4096)


def _gemma3(d_model, num_layers, num_heads, d_ff, sliding_window) -> GemmaConfig:
  return GemmaConfig(
      version=3, vocab_size=262144, d_model=d_model, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=1, head_dim=256, d_ff=d_ff,
      query_pre_attn_scalar=256.0, sliding_window=sliding_window,
      attn_logit_softcap=None, final_logit_softcap=None,
      rope_base_global=1_000_000.0, rope_base_local=10_000.0,
      use_qk_norm=True)


# The published sizes (HF `google/t5-v1_1-*`, `google/gemma-2-*`,
# `google/gemma-3-*`). Each entry: the config and the published parameter
# count, which `tests/test_models.py` checks to 1%.
T5_SIZES: dict[str, tuple[T5Config, float]] = {
    "t5_v1_1_small": (_t5(512, 1024, 6, 8), 77e6),
    "t5_v1_1_base": (_t5(768, 2048, 12, 12), 248e6),
    "t5_v1_1_large": (_t5(1024, 2816, 16, 24), 783e6),
    "t5_v1_1_xl": (_t5(2048, 5120, 32, 24), 2.85e9),
    "t5_v1_1_xxl": (_t5(4096, 10240, 64, 24), 11.1e9),
}

GEMMA_SIZES: dict[str, tuple[GemmaConfig, float]] = {
    "gemma2_2b": (_gemma2(2304, 26, 8, 4, 256, 9216, 256.0), 2.61e9),
    "gemma2_9b": (_gemma2(3584, 42, 16, 8, 256, 14336, 256.0), 9.24e9),
    "gemma2_27b": (_gemma2(4608, 46, 32, 16, 128, 36864, 144.0), 27.2e9),
    "gemma3_270m": (_gemma3(640, 18, 4, 2048, 512), 268e6),
    "gemma3_1b": (_gemma3(1152, 26, 4, 6912, 512), 1.0e9),
}


def get_config(name: str) -> T5Config | GemmaConfig:
  """The config of a published size, e.g. "t5_v1_1_large" or "gemma2_27b"."""
  sizes = {**T5_SIZES, **GEMMA_SIZES}
  if name not in sizes:
    raise KeyError(f"unknown model size {name!r}; known: {sorted(sizes)}")
  return sizes[name][0]


# Tiny sizes (vocabulary 128, a few thousand parameters): the unit tests and
# the random smoke-run pairs (`harness.runner.pairs.RANDOM_SIZES`).
TINY_T5 = T5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_heads=4,
                   num_encoder_layers=2, num_decoder_layers=2)
TINY_GEMMA2 = GemmaConfig(
    version=2, vocab_size=128, d_model=32, num_layers=2, num_heads=4,
    num_kv_heads=2, head_dim=8, d_ff=64, query_pre_attn_scalar=12.0,
    sliding_window=4, attn_logit_softcap=2.0, final_logit_softcap=5.0)
TINY_GEMMA3 = GemmaConfig(
    version=3, vocab_size=128, d_model=32, num_layers=3, num_heads=4,
    num_kv_heads=1, head_dim=8, d_ff=64, query_pre_attn_scalar=8.0,
    sliding_window=4,
    attention_types=(AttentionType.LOCAL, AttentionType.GLOBAL,
                     AttentionType.LOCAL),
    attn_logit_softcap=None, final_logit_softcap=None,
    rope_base_global=1_000_000.0, rope_base_local=10_000.0,
    rope_scale_global=2.0, use_qk_norm=True)
