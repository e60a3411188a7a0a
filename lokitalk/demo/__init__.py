"""`lokitalk demo`: the whole pipeline on a self-made synthetic subject (pipeline, ground-truth
checks, HTML report)."""

from .pipeline import NEW_SENTENCE, STEPS, TRAINING_SCRIPT, DemoConfig, miniature, run_demo

__all__ = ["NEW_SENTENCE", "STEPS", "TRAINING_SCRIPT", "DemoConfig", "miniature", "run_demo"]
