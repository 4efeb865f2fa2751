"""Trace transforms (``curation.extract``): each registers with ``meds1.plugins.TRACE_TRANSFORMS``."""
