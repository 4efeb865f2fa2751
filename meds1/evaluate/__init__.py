"""Evaluation: prompts, generation backends, test-time scaling, the answer matcher, metrics and re-scoring.

Import the pieces directly (kept out of this file so ``import meds1.evaluate`` stays cheap):
``meds1.matcher.match``, ``meds1.evaluate.metrics.compute_metrics``, ``python -m meds1.evaluate.score``.
"""
