"""The built-in perturbations (registered on import of ``meds1.traces.perturb``)."""
import meds1.traces.perturb  # noqa: F401
