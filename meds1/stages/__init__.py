"""Pipeline stages, one module each: what a stage's job receives and which experiments have it.

A stage is a row in ``meds1.plugins.STAGES``: its name (the rule's name), the folder its targets live in
(``<folder>/<exp>/...``), which experiments have it, whether its job loads the experiment's own model, and the spec
(the resolved slice of the experiment its script receives through ``params: spec``). A new stage is one module here,
one rule file, one ``include:`` and one script; nothing else spells its name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from meds1.plugins import STAGES


@dataclass(frozen=True)
class Stage:
    name: str
    folder: str                                   # targets: <folder>/<exp>/...
    applies: Callable[..., bool]                  # applies(exp) -> does this experiment have the stage?
    build_spec: Callable[..., dict]               # build_spec(reg, exp) -> the job's spec (JSON-able)
    loads_model: Callable[..., bool | str]        # loads_model(reg, exp) -> True: its job loads the experiment's
    #                                               model; a model key: that model; False: none
    doc: str = ""


def define(stage: Stage) -> Stage:
    STAGES.add(stage.name, stage, doc=stage.doc)
    return stage
