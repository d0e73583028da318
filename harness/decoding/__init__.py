"""Decoding: every method of both papers as a jitted JAX program.

Public API::

    from harness import decoding
    program = decoding.compile("spec_cascade_token", drafter, verifier,
                               prompt_bucket=16, gamma=5, max_decode_len=80)
    out = program(prompt, alpha=0.3, temperature=1.0, top_p=1.0,
                  rng=jax.random.key(0))
    out.tokens, out.num_tokens, out.stats

    # compile checks the static arguments; each call checks the prompt and
    # α, T, top-P (ValueError naming the argument).
    # Or, checked and one-off (compile, cached -> call):
    out = decoding.decode("spec_cascade_token", drafter, verifier, prompt,
                          gamma=5, alpha=0.3, max_decode_len=80)

Programs, families, caching and prompt buckets: see
``harness.decoding.program``. Models enter only through the protocol in
``harness.decoding.protocol`` (this package never imports a concrete
model).
"""

from harness.decoding import methods as _methods  # registers the methods
from harness.decoding.program import (Program, buffer_size, clear_cache,
                                      compile, compile_stats, decode,
                                      decode_many, decoder_prompt_len,
                                      enable_compilation_cache,
                                      reset_compile_stats, trace_count,
                                      window_buffer_size)
from harness.decoding.protocol import Cache, DecodingModel
from harness.decoding.registry import (METHODS, MethodSpec, check_knobs,
                                       prompt_bucket, register_method,
                                       validate)
from harness.decoding.state import PAD_TOKEN, STAT_DOCS, DecodeOutput
from harness.decoding.targets import RULES, target

del _methods

__all__ = ["METHODS", "MethodSpec", "Program", "Cache", "DecodingModel",
           "buffer_size", "check_knobs", "clear_cache", "compile",
           "compile_stats", "decode", "decode_many", "decoder_prompt_len",
           "enable_compilation_cache", "prompt_bucket", "register_method",
           "reset_compile_stats", "trace_count", "validate",
           "window_buffer_size", "PAD_TOKEN", "STAT_DOCS", "DecodeOutput",
           "RULES", "target"]
