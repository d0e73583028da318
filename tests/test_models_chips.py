"""Per-chip memory and the choice of model parallelism (published shapes)."""

import jax
import jax.numpy as jnp
import pytest

from harness.models import configs, chips, get_config, random_t5
from harness.models.sharding import param_partition_specs

GIB = chips.GIB
GEMMA_2B, GEMMA_9B, GEMMA_27B = (get_config(f"gemma2_{n}")
                                 for n in ("2b", "9b", "27b"))


@pytest.mark.parametrize("kind, name, gib", [
    ("TPU v4", "v4", 32), ("TPU v5 lite", "v5e", 16), ("TPU v5p", "v5p", 95),
    ("TPU v5", "v5p", 95), ("NVIDIA A100-SXM4-40GB", "A100-40GB", 40),
    ("NVIDIA A100-SXM4-80GB", "A100-80GB", 80),
    ("NVIDIA H100 80GB HBM3", "H100", 80), ("NVIDIA H200", "H200", 141)])
def test_chip_table(kind, name, gib):
  chip = chips.chip_of(kind)
  assert (chip.name, chip.memory_gib) == (name, gib)
  assert chips.CHIP_MEMORY_GIB[name] == gib
  assert chips.chip_named(name) is chip
  assert chip.bandwidth_bytes_s > 0 and chip.flops > 0


def test_cpu_memory_is_host_memory():
  assert chips.chip_of("cpu") is None
  if jax.devices()[0].platform == "cpu":
    assert chips.device_memory_bytes() == chips.host_memory_bytes()


def test_weight_bytes_per_chip_counts_split_and_replicated():
  model = random_t5(jax.random.PRNGKey(0), configs.TINY_T5)
  leaves = jax.tree.leaves(model.params)
  total = sum(x.size * 2 for x in leaves)
  assert chips.weight_bytes_per_chip(configs.TINY_T5, jnp.bfloat16,
                                       1) == total
  two = chips.weight_bytes_per_chip(configs.TINY_T5, jnp.bfloat16, 2)
  assert total / 2 < two < total  # norms and biases stay replicated
  mesh = jax.sharding.Mesh(jax.devices()[:1], ("model",))
  split = sum(any(s) for s in jax.tree.leaves(
      param_partition_specs(model.params, mesh),
      is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec)))
  assert 0 < split < len(leaves)
  # Gemma 2 27B in bfloat16: 27.2e9 parameters ≈ 50.7 GiB.
  assert chips.weight_bytes_per_chip(GEMMA_27B, jnp.bfloat16,
                                       1) / GIB == pytest.approx(50.7, 0.01)


@pytest.mark.parametrize("verifier, num_chips, gib, want", [
    (GEMMA_27B, 4, 32, 4),  # TPU v4-8 host: 4 devices
    (GEMMA_27B, 8, 16, 8),  # v5e-8
    (GEMMA_27B, 8, 80, 1),  # 8 x H100: fits one chip
    (GEMMA_9B, 4, 32, 1),
    (GEMMA_9B, 4, 16, 2)])
def test_auto_picks_the_smallest_fitting_divisor(verifier, num_chips, gib, want):
  got = chips.choose_model_parallel("auto", verifier, [GEMMA_2B],
                                      jnp.bfloat16, num_chips, gib * GIB)
  assert got == want
  per_chip = (chips.weight_bytes_per_chip(verifier, jnp.bfloat16, got)
              + chips.weight_bytes_per_chip(GEMMA_2B, jnp.bfloat16, 1))
  assert per_chip <= 0.9 * gib * GIB


def test_refusal_names_the_numbers():
  with pytest.raises(ValueError) as err:
    chips.choose_model_parallel("auto", GEMMA_27B, [GEMMA_2B],
                                  jnp.bfloat16, 4, 16 * GIB)
  message = str(err.value)
  assert "\n" not in message
  for part in ("55.6 GiB", "4 chips", "16.0 GiB", "4-way"):
    assert part in message, message
  with pytest.raises(ValueError, match="model_parallel=8 does not divide "
                     "the 4 devices"):
    chips.choose_model_parallel(8, GEMMA_27B, [GEMMA_2B], jnp.bfloat16, 4,
                                  32 * GIB)
  with pytest.raises(ValueError, match="needs 30.2 GiB per chip"):
    chips.choose_model_parallel(2, GEMMA_27B, [GEMMA_2B], jnp.bfloat16, 4,
                                  32 * GIB)
