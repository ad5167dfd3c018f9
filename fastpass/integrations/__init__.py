"""Adapters that plug fastpass into evaluation harnesses people already run.

``fastpass.integrations.lm_eval``: ``FastpassLM``, registered in lm-eval as model ``fastpass``.
Nothing here is imported by ``import fastpass``: each adapter imports its harness on first use."""
