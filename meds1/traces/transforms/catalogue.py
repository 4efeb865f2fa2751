"""The built-in transforms (registered on import of ``meds1.traces.extract``)."""
import meds1.traces.extract  # noqa: F401
