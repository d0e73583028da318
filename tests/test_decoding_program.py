"""decoding.compile / Program: caching, families, stop sequences, buffers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from harness import decoding
from harness.decoding import registry
from harness.models import configs, random_gemma, random_t5
from harness.models.toy import BigramLM
from harness.testing import bigram as tu

# Every rule-based method that runs the speculative loop, with its options.
RULE_BASED = (
    [(m, {}) for m in ("spec_decode", "spec_cascade_chow", "spec_cascade_diff",
                       "spec_cascade_opt", "spec_cascade_token",
                       "spec_cascade_token_v1", "spec_cascade_token_v2")]
    + [("spec_decode_lossy", {"beta": b}) for b in ("one", "normalize")]
    + [("bild_star", {"discrepancy": d}) for d in ("prob_gap", "nll", "tv")])


def _no_eos_pair(seed: int):
  """Toy pair whose EOS is never drawn, so decodes run to the limit."""
  return tuple(BigramLM(m.logits.at[:, tu.EOS].set(-1e9), eos_id=tu.EOS)
               for m in tu.pair(seed))


def test_program_attributes_and_call_equal_decode():
  drafter, verifier = tu.pair(30)
  program = decoding.compile("spec_cascade_token", drafter, verifier,
                             prompt_bucket=8, gamma=3, max_decode_len=21)
  assert (program.method, program.gamma, program.prompt_bucket,
          program.max_decode_len) == ("spec_cascade_token", 3, 8, 21)
  assert program.options == {}
  assert program.family == "speculative"
  # Decoder-only: the bucket + the output + the γ + 1 window + 1.
  assert program.buffer_size == 8 + 21 + 4 + 1
  assert program.compile_s > 0
  kw = dict(alpha=0.4, temperature=1.0, top_p=0.9, rng=jax.random.key(3))
  got = program(np.array([1, 2]), **kw)
  want = decoding.decode("spec_cascade_token", drafter, verifier,
                         np.array([1, 2]), gamma=3, max_decode_len=21, **kw)
  np.testing.assert_array_equal(got.tokens, want.tokens)
  for name, value in want.stats.items():
    np.testing.assert_array_equal(got.stats[name], value)


def test_program_many_equals_decode_many():
  drafter, verifier = tu.pair(31)
  keys = jax.random.split(jax.random.key(0), 5)
  program = decoding.compile("spec_decode_lossy", drafter, verifier,
                             prompt_bucket=8, gamma=2, max_decode_len=11,
                             beta="normalize")
  assert program.options == {"beta": "normalize"}
  got = program.many(np.array([3]), keys, alpha=0.5)
  want = decoding.decode_many("spec_decode_lossy", drafter, verifier,
                              np.array([3]), keys, gamma=2, alpha=0.5,
                              max_decode_len=11, beta="normalize")
  assert got.tokens.shape == (5, 11)
  np.testing.assert_array_equal(got.tokens, want.tokens)


def test_compile_is_cached_per_architecture_not_weights():
  drafter, verifier = tu.pair(32)
  kw = dict(prompt_bucket=8, gamma=2, max_decode_len=13)
  first = decoding.compile("spec_decode", drafter, verifier, **kw)
  before = decoding.compile_stats()
  again = decoding.compile("spec_decode", *tu.pair(33), **kw)
  assert again.executable is first.executable
  assert decoding.compile_stats() == before
  # The new weights are used: the outputs differ.
  a = first(np.array([1]), temperature=0.0)
  b = again(np.array([1]), temperature=0.0)
  assert not np.array_equal(a.tokens, b.tokens)
  # Another architecture (vocabulary size) compiles a new program.
  other = decoding.compile("spec_decode", tu.bigram(1, vocab=7, eos=6),
                           tu.bigram(2, vocab=7, eos=6), **kw)
  assert other.executable is not first.executable
  assert decoding.compile_stats()["programs"] == before["programs"] + 1


def test_rule_based_sweep_compiles_one_program_per_gamma():
  """Issue 17: every rule-based speculative method shares one program."""
  drafter, verifier = tu.pair(34)
  for gamma in (2, 4):
    before = decoding.compile_stats()["programs"]
    traces = decoding.trace_count("spec_decode", gamma)
    executables = set()
    for method, opts in RULE_BASED:
      alpha = 0.5 if method != "spec_cascade_opt" else 1.0
      program = decoding.compile(method, drafter, verifier, prompt_bucket=8,
                                 gamma=gamma, max_decode_len=23, **opts)
      executables.add(id(program.executable))
      out = program(np.array([1, 2]), alpha=alpha, temperature=1.0)
      assert int(out.num_tokens) > 0
    assert len(executables) == 1
    assert decoding.compile_stats()["programs"] - before == 1
    assert decoding.trace_count("spec_decode", gamma) - traces == 1


def test_variant_selects_the_rule():
  """The shared program with the rule index bound equals each rule alone:
  at T = 0, Diff at α = -1 is spec_decode, Token at α = 1 the drafter."""
  drafter, verifier = tu.pair(35)
  prompt = np.array([2, 3])
  kw = dict(prompt_bucket=8, gamma=3, max_decode_len=24)
  sd = decoding.compile("spec_decode", drafter, verifier, **kw)(
      prompt, temperature=0.0)
  diff = decoding.compile("spec_cascade_diff", drafter, verifier, **kw)(
      prompt, alpha=-1.0, temperature=0.0)
  np.testing.assert_array_equal(diff.tokens, sd.tokens)
  token = decoding.compile("spec_cascade_token", drafter, verifier, **kw)(
      prompt, alpha=1.0, temperature=0.0)
  ar = decoding.decode("autoregressive", drafter, verifier, prompt,
                       temperature=0.0, max_decode_len=24, model="drafter")
  np.testing.assert_array_equal(token.tokens, ar.tokens)
  # spec_decode needs no drafter call for the bonus token; π = q rules do.
  assert int(sd.stats["drafter_steps"]) == 3 * int(sd.stats["iterations"])
  assert int(token.stats["drafter_steps"]) > 3 * int(token.stats["iterations"])


def test_gamma_independent_methods_compile_once_for_all_gammas():
  drafter, verifier = tu.pair(36)
  before = decoding.compile_stats()["programs"]
  programs = [decoding.compile("autoregressive", drafter, verifier,
                               prompt_bucket=8, gamma=g, max_decode_len=25,
                               model=m)
              for g in (1, 3, 7) for m in ("verifier", "drafter")]
  assert decoding.compile_stats()["programs"] - before == 1
  a = programs[0](np.array([1]), temperature=0.0)
  b = programs[1](np.array([1]), temperature=0.0)
  assert int(a.stats["verifier_calls"]) > 0 == int(a.stats["drafter_steps"])
  assert int(b.stats["drafter_steps"]) > 0 == int(b.stats["verifier_calls"])


def test_compile_stats_reset():
  decoding.reset_compile_stats()
  assert decoding.compile_stats() == {"programs": 0, "compile_s": 0.0}
  drafter, verifier = tu.pair(37)
  decoding.compile("oracle_cascade_diff", drafter, verifier, prompt_bucket=8,
                   gamma=1, max_decode_len=27)
  stats = decoding.compile_stats()
  assert stats["programs"] == 1 and stats["compile_s"] > 0


def test_compile_checks_before_tracing_and_program_checks_prompt_length():
  drafter, verifier = tu.pair(38)
  before = decoding.compile_stats()["programs"]
  for kw, name in ((dict(gamma=0), "gamma"), (dict(prompt_bucket=0),
                                                "prompt_bucket"),
                   (dict(max_small_run=0), "max_small_run"),
                   (dict(stop_sequences=((),)), "stop_sequences"),
                   (dict(stop_sequences=((1, 99),)), "stop_sequences")):
    args = dict(prompt_bucket=8, gamma=2, max_decode_len=9)
    args.update(kw)
    with pytest.raises(ValueError, match=name):
      decoding.compile("token_cascade_chow", drafter, verifier, **args)
  assert decoding.compile_stats()["programs"] == before
  program = decoding.compile("spec_decode", drafter, verifier,
                             prompt_bucket=8, gamma=2, max_decode_len=9)
  with pytest.raises(ValueError, match="prompt_bucket"):
    program(np.arange(9) % 5)


def test_program_call_checks_knobs_without_recompiling():
  drafter, verifier = tu.pair(39)
  program = decoding.compile("spec_cascade_token", drafter, verifier,
                             prompt_bucket=8, gamma=2, max_decode_len=9)
  lo, hi = decoding.METHODS["spec_cascade_token"].valid_alpha()
  program(np.array([1, 2]), alpha=lo)  # in range: runs
  traces = decoding.trace_count("spec_cascade_token", 2)
  for kw, name in ((dict(alpha=hi + 1.0), "alpha"),
                   (dict(alpha=float("nan")), "alpha"),
                   (dict(temperature=-1.0), "temperature"),
                   (dict(top_p=0.0), "top_p"),
                   (dict(top_p=1.5), "top_p")):
    with pytest.raises(ValueError, match=name):
      program(np.array([1, 2]), **kw)
  with pytest.raises(ValueError, match="prompt ids"):
    program(np.array([1, verifier.vocab_size]))
  with pytest.raises(ValueError, match="alpha"):
    decoding.check_knobs("spec_cascade_token", alpha=hi + 1.0,
                         temperature=1.0, top_p=1.0)
  # Other in-range knobs reuse the executable.
  program(np.array([1, 2]), alpha=hi, temperature=0.5, top_p=0.7)
  assert decoding.trace_count("spec_cascade_token", 2) == traces


def test_method_checks_live_in_method_specs():
  assert decoding.METHODS["bild"].check is not None
  assert decoding.METHODS["token_cascade_chow"].check is not None
  drafter, verifier = tu.pair(0)
  with pytest.raises(ValueError, match="rollback_threshold"):
    decoding.METHODS["bild"].check(
        dict(decoding.METHODS["bild"].defaults, rollback_threshold=-1.0),
        drafter)


def test_enable_compilation_cache_sets_the_config(tmp_path):
  names = ("jax_compilation_cache_dir",
           "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  saved = {n: getattr(jax.config, n) for n in names}
  try:
    decoding.enable_compilation_cache(tmp_path / "xla")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
    assert (tmp_path / "xla").is_dir()
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == 0
  finally:
    for n, v in saved.items():
      jax.config.update(n, v)


# --- stop sequences -----------------------------------------------------------

STOP_METHODS = [
    ("autoregressive", 0.0, {}),
    ("spec_decode", 0.0, {}),
    ("spec_cascade_token", 0.5, {}),
    ("spec_cascade_chow", 0.3, {}),
    ("token_cascade_chow", 0.4, {"max_small_run": 3}),
    ("oracle_cascade_diff", 0.1, {}),
    pytest.param("cs_drafting", 0.0, {}, marks=pytest.mark.slow),  # ~21 s
]


def _cut(tokens: list[int], stop: tuple[int, ...]) -> list[int]:
  """tokens up to and including the first occurrence of stop."""
  n = len(stop)
  for end in range(n, len(tokens) + 1):
    if tuple(tokens[end - n:end]) == stop:
      return tokens[:end]
  return tokens


@pytest.mark.parametrize("method,alpha,opts", STOP_METHODS)
def test_stop_sequences_cut_greedy_output(method, alpha, opts):
  """Greedy output with stop sequences = without them, cut right after the
  first occurrence (a 3-token one, so that it can straddle blocks)."""
  drafter, verifier = _no_eos_pair(40)
  prompt = np.array([1, 2, 3])
  kw = dict(gamma=3, alpha=alpha, temperature=0.0, max_decode_len=30, **opts)
  out = decoding.decode(method, drafter, verifier, prompt, **kw)
  full = np.asarray(out.tokens)[:int(out.num_tokens)].tolist()
  assert len(full) == 30
  stop = tuple(full[9:12])
  want = _cut(full, stop)
  assert len(want) < len(full)
  got = decoding.decode(method, drafter, verifier, prompt,
                        stop_sequences=((tu.EOS, tu.EOS), stop), **kw)
  n = int(got.num_tokens)
  assert np.asarray(got.tokens)[:n].tolist() == want
  assert np.all(np.asarray(got.tokens)[n:] == decoding.PAD_TOKEN)


def test_stop_sequence_must_lie_in_the_generated_tokens():
  drafter, verifier = _no_eos_pair(41)
  prompt = np.array([1, 2, 3])
  kw = dict(temperature=0.0, max_decode_len=20, model="verifier")
  full = decoding.decode("autoregressive", drafter, verifier, prompt, **kw)
  first = int(full.tokens[0])
  stop = (3, first)  # begins in the prompt
  want = _cut(np.asarray(full.tokens).tolist(), stop)
  got = decoding.decode("autoregressive", drafter, verifier, prompt,
                        stop_sequences=(stop,), **kw)
  assert np.asarray(got.tokens)[:int(got.num_tokens)].tolist() == want


# --- buffers of encoder-decoder models ---------------------------------------

@pytest.mark.slow  # default-suite budget (make test-slow); ~23 s
def test_long_encoder_prompt_does_not_grow_the_decoder_cache():
  t5 = random_t5(jax.random.key(0), configs.TINY_T5)
  sizes = {b: decoding.buffer_size("spec_decode", t5, t5, prompt_bucket=b,
                                   gamma=3, max_decode_len=16, options={})
           for b in (8, 512)}
  assert sizes[8] == sizes[512] == 1 + 16 + 4 + 1  # decoder start + out + γ+2
  cache = jax.eval_shape(lambda p, n: t5.prefill(p, n, sizes[512]),
                         jax.ShapeDtypeStruct((512,), jnp.int32),
                         jax.ShapeDtypeStruct((), jnp.int32))
  assert cache.self_k[0].shape[1] == sizes[512]
  # A decoder-only model's decoder prompt is the bucket itself.
  gemma = random_gemma(jax.random.key(1), configs.TINY_GEMMA2)
  assert decoding.buffer_size("spec_decode", gemma, gemma, prompt_bucket=512,
                              gamma=3, max_decode_len=16,
                              options={}) == 512 + 16 + 5
  # A long prompt still decodes (greedy speculative = greedy verifier).
  prompt = np.arange(300) % 100 + 2
  kw = dict(temperature=0.0, max_decode_len=8)
  spec = decoding.decode("spec_decode", t5, t5, prompt, gamma=3, **kw)
  ref = decoding.decode("autoregressive", t5, t5, prompt, **kw)
  np.testing.assert_array_equal(spec.tokens, ref.tokens)
  program = decoding.compile("spec_decode", t5, t5, prompt_bucket=512,
                             gamma=3, max_decode_len=8)
  assert program.buffer_size == 1 + 8 + 5


def test_window_buffer_size_is_the_default_scratch_buffer():
  """One rule sizes a program's buffer and a cache sized by window alone."""
  t5 = random_t5(jax.random.key(0), configs.TINY_T5)
  for gamma in (1, 3, 5):
    assert decoding.window_buffer_size(
        t5, prompt_bucket=16, max_decode_len=20, window=gamma + 1) == (
            decoding.buffer_size("spec_decode", t5, t5, prompt_bucket=16,
                                 gamma=gamma, max_decode_len=20, options={}))


def test_validate_runs_the_method_check():
  """Method-specific options are checked by MethodSpec.check."""
  drafter, verifier = tu.pair(0)
  with pytest.raises(ValueError, match="max_small_run"):
    registry.validate("bild", drafter, verifier, np.array([1]), gamma=1,
                      alpha=0.5, temperature=1.0, top_p=1.0,
                      max_decode_len=8, options={"max_small_run": 0})
