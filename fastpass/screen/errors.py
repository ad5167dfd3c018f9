"""Errors a user can fix: one line each, naming the fix (the CLI prints them without a traceback)."""
from __future__ import annotations


class ScreenError(ValueError):
    """Bad input to ``fp.screen`` / ``fastpass screen``: the message says what to change."""


class ModelLoadError(RuntimeError):
    """A model or tokenizer could not be loaded offline."""
