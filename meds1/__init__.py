"""med-s1: curate, train, evaluate and compare medical-reasoning LLMs."""
__version__ = "0.1.0"
