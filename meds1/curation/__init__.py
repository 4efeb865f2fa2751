"""Curation: selection methods (``methods``), the pipeline that runs them, and per-row status bookkeeping."""
