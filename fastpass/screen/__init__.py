"""Screening: problems -> n samples each -> grades -> pass@k curve, gap, post-RL prediction, verdict.

``fp.screen(model, tokenizer, problems, ...)`` returns a ``ScreenReport``; ``fastpass screen`` is
the command line. With no model and no problems it screens the embedded SmolLM2-135M-Instruct on
a generated default set."""
from fastpass.screen.errors import ModelLoadError, ScreenError
from fastpass.screen.presets import PRESETS, Preset, Template
from fastpass.screen.problems import Problem, load_problems
from fastpass.screen.default_set import DEFAULT_PRESET, default_problems
from fastpass.screen.report import ScreenReport
from fastpass.screen.pipeline import DEFAULT_KS, screen

__all__ = ["screen", "ScreenReport", "ScreenError", "ModelLoadError", "Problem", "load_problems", "PRESETS",
           "Preset", "Template", "DEFAULT_PRESET", "default_problems", "DEFAULT_KS"]
