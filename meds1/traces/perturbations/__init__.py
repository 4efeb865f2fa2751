"""Step-level perturbations (``curation.perturbation.type``): each registers with ``meds1.plugins.PERTURBATIONS``."""
