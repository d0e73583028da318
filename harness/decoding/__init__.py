"""Decoding: every method of both papers as one jitted JAX program each.

Public API::

    from harness import decoding
    out = decoding.decode("spec_cascade_token", drafter, verifier, prompt,
                          gamma=5, alpha=0.3, temperature=1.0, top_p=1.0,
                          max_decode_len=80, rng=jax.random.key(0))
    out.tokens, out.num_tokens, out.stats

This package never imports a concrete model: models enter through the
protocol in ``harness.models.protocol``.
"""

from harness.decoding import methods as _methods  # registers the methods
from harness.decoding.registry import (METHODS, MethodSpec, decode,
                                       decode_many, prompt_bucket,
                                       register_method, trace_count, validate)
from harness.decoding.state import PAD_TOKEN, STAT_DOCS, DecodeOutput
from harness.decoding.targets import RULES, target

del _methods

__all__ = ["METHODS", "MethodSpec", "decode", "decode_many", "prompt_bucket",
           "register_method", "trace_count", "validate", "PAD_TOKEN",
           "STAT_DOCS", "DecodeOutput", "RULES", "target"]
