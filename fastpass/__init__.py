"""fastpass: pass@K screening of language models, fast.

Statistics (pass@k, curves, verdicts), a GPU regex grader, a shared-prefix sampler and the
screening pipeline behind one small API; see README.md.

Names are imported on first use (module ``__getattr__``): ``import fastpass`` and ``fastpass
--help`` then cost milliseconds instead of torch's ~2 s import; ``fp.pass_at_k`` etc. behave as
before."""
from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# public name -> module it lives in
_EXPORTS = {
    "BackendUnavailable": "fastpass._backend",
    "PassKCurve": "fastpass.stats", "pass_at_k": "fastpass.stats", "pass_at_k_curve": "fastpass.stats",
    "Prediction": "fastpass.verdict", "Verdict": "fastpass.verdict", "elicitation_gap": "fastpass.verdict",
    "predict_post_rl": "fastpass.verdict", "verdict": "fastpass.verdict",
    "Simulation": "fastpass.simulate", "simulate": "fastpass.simulate",
    "regex": "fastpass.regex", "attention": "fastpass.attention", "sampling": "fastpass.sampling",
    "BOXED": "fastpass.grading", "GSM8K_ANSWER": "fastpass.grading", "LAST_NUMBER": "fastpass.grading",
    "R1_ANSWER": "fastpass.grading", "grade": "fastpass.grading",
    "SampleBatch": "fastpass.engine", "Sampler": "fastpass.engine", "generate": "fastpass.engine",
    "ScreenReport": "fastpass.screen", "screen": "fastpass.screen",
    "load_default_model": "fastpass.screen.loading",  # (model, tokenizer) of the embedded SmolLM2
    # from screen to decision: per-problem fate, the what-if page, gamma from past runs
    "FateTable": "fastpass.fate", "fate_table": "fastpass.fate",
    "whatif_html": "fastpass.whatif", "write_whatif": "fastpass.whatif",
    "Calibration": "fastpass.calibration", "calibrate": "fastpass.calibration",
    "load_calibration": "fastpass.calibration", "example_runs": "fastpass.calibration",
    "load_pairs": "fastpass.calibration_data",
}
_MODULES = {"regex", "attention", "sampling"}  # exported as modules
# functions named like the module that holds them: fastpass.<name> is the function, as it always was
_SHADOWED = {"screen", "verdict", "simulate"}
__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    where = _EXPORTS.get(name)
    if where is None:
        raise AttributeError(f"module 'fastpass' has no attribute {name!r}")
    module = importlib.import_module(where)
    value = module if name in _MODULES else getattr(module, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    def __setattr__(self, name, value):
        # `fastpass.screen` names both the subpackage and the function fp.screen (so do verdict and
        # simulate). Importing the submodule (by anyone, at any time) makes Python bind it here;
        # keep the function, as the eager `from fastpass.screen import screen` of earlier versions did.
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            value = getattr(value, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
