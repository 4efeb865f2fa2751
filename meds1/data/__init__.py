"""Dataset loading to canonical columns, shared by every stage (no stage imports another stage's loaders).

- ``meds1.data.train``: training rows (Question, Complex_CoT, Response, id, ...), from files or the hub.
- ``meds1.data.eval_items``: eval items ({id, source, question, options, answer_idx}), from files or the hub.
"""
