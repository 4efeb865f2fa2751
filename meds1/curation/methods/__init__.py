"""Selection methods, one module each; every module registers itself with ``meds1.plugins.SELECTION_METHODS``.

Keep heavy imports (torch, pandas, sklearn, sentence-transformers) inside functions: the registry imports every
module here at Snakefile parse time to list the names, options and needs.
"""
