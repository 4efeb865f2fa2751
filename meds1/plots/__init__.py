"""Results: summary table, the paper's figures with CIs, paired significance vs the baseline.

Kept light: matplotlib and pandas load only when ``build_results`` (or a submodule) is first used.
"""
from __future__ import annotations

__all__ = ["build_results", "output_paths", "figure_names"]


def __getattr__(name: str):
    if name in ("output_paths", "figure_names"):  # light: the plot rule reads them at parse time
        from meds1.plots import outputs

        return getattr(outputs, name)
    if name in __all__:
        from meds1.plots import build

        return getattr(build, name)
    raise AttributeError(f"module 'meds1.plots' has no attribute '{name}'")
