"""fastpass: pass@K screening of language models, fast.

Statistics (pass@k, curves, verdicts), a GPU regex grader, a shared-prefix sampler and the
screening pipeline behind one small API; see README.md."""
from fastpass._backend import BackendUnavailable
from fastpass.stats import PassKCurve, pass_at_k, pass_at_k_curve
from fastpass.verdict import Prediction, Verdict, elicitation_gap, predict_post_rl, verdict
from fastpass.simulate import Simulation, simulate
from fastpass import regex
from fastpass.grading import BOXED, GSM8K_ANSWER, LAST_NUMBER, R1_ANSWER, grade
from fastpass import attention, sampling
from fastpass.engine import SampleBatch, Sampler, generate
from fastpass.screen import ScreenReport, screen

__version__ = "0.1.0"
