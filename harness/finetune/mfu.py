"""Model FLOPs of a T5 training step and their utilisation of the chips.

Model FLOPs (as in the PaLM paper's MFU: the work the model needs, not what
the implementation happens to execute, e.g. no rematerialisation) of one
training step over ``B`` rows of ``P`` encoder and ``T`` decoder positions
(padding included: a packed row is computed in full):

  6 · (N_enc · B·P + (N_dec + N_out) · B·T)                 matmul weights
  + 12 · B · (L_enc · P² + L_dec · (T² + T·P)) · H·K          attention

where N_enc / N_dec are the weights of the encoder / decoder layers used
in matmuls (q, k, v, o and the MLP; not norms, position biases or the
embedding lookup), N_out = D·V the output projection, H·K the attention
width. The factor 6 is 2 (multiply-add) × 3 (forward, then backward for
activations and for weights); attention scores and the weighted sum are
2 · 2 · Q · K_len · H·K each forward, ×3 likewise (causal masking is not
discounted, as is customary). MFU = model FLOPs / step time / (chips × the
chip's dense bfloat16 peak from `harness.models.chips.CHIPS`); on a
device not in the table (CPU) it is None, reported as "unknown".
"""

from __future__ import annotations

import jax

from harness.models import chips
from harness.models.configs import T5Config


def matmul_params(config: T5Config) -> tuple[int, int, int]:
  """(encoder layers', decoder layers', output projection's) matmul weights.
  """
  c = config
  attn = 4 * c.d_model * c.num_heads * c.d_kv
  mlp = (3 if c.gated_act == "gelu_tanh" else 2) * c.d_model * c.d_ff
  enc = c.num_encoder_layers * (attn + mlp)
  dec = c.num_decoder_layers * (2 * attn + mlp)
  return enc, dec, c.d_model * c.vocab_size


def step_flops(config: T5Config, rows: int, inputs_length: int,
               targets_length: int) -> float:
  """Model FLOPs of one training step (forward and backward), see above."""
  enc, dec, out = matmul_params(config)
  b, p, t = rows, inputs_length, targets_length
  width = config.num_heads * config.d_kv
  dense = 6.0 * (enc * b * p + (dec + out) * b * t)
  attention = 12.0 * b * width * (
      config.num_encoder_layers * p * p
      + config.num_decoder_layers * (t * t + t * p))
  return dense + attention


def peak_flops(device_list=None) -> float | None:
  """Summed dense bf16 peak of the devices (all of jax's by default), or
  None when a device kind is not in the table (e.g. CPU)."""
  device_list = jax.devices() if device_list is None else device_list
  total = 0.0
  for device in device_list:
    chip = chips.chip_of(device.device_kind)
    if chip is None or device.platform == "cpu":
      return None
    total += chip.flops
  return total


def chip_name(device_list=None) -> str:
  """The table's title of the devices' chip, or their jax device kind."""
  device_list = jax.devices() if device_list is None else device_list
  kind = device_list[0].device_kind
  chip = chips.chip_of(kind)
  return chip.title if chip is not None and (
      device_list[0].platform != "cpu") else kind


def utilisation(flops: float, seconds: float, peak: float | None
                ) -> float | None:
  """Model FLOPs utilisation of `flops` done in `seconds`, None if unknown."""
  if peak is None or seconds <= 0:
    return None
  return flops / seconds / peak
