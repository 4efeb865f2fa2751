"""Step-level perturbations (``curation.perturbation.type``): one module each, registered with
``meds1.plugins.PERTURBATIONS``; the engine is ``meds1.traces.perturb``."""
