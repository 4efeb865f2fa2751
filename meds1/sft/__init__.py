"""Supervised fine-tuning: chat examples (``chat``), settings and the effective batch (``config``), optimizer groups
(``optim``), length fitting (``fit``), checkpoints (``checkpoints``), the trainer (``train``), the job entry point
(``launch``). Kept import-light: ``import meds1.sft`` does not import torch or trl.
"""
