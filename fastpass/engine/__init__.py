"""The shared-prefix sampling engine: prompts prefilled once, split attention, graph-captured decode."""
from fastpass.engine.generate import generate
from fastpass.engine.sampler import SampleBatch, Sampler

__all__ = ["generate", "Sampler", "SampleBatch"]
