"""Recipe: which optimizations a predictor runs with, as data.

The foundation knows one switch, the dtype. The optimization ladder (safe
accumulation, interleaved attention, true FP16, graph pass, CUDA graphs) adds
fields here, so that every benchmark and notebook switches one thing at a time.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class Recipe:
    name: str = "baseline"
    dtype: str = "float32"

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}: choose float32, float16 or bfloat16")
        object.__setattr__(self, "dtype", DTYPES[self.dtype])


RECIPES = {r.name: r for r in [Recipe("baseline", "float32"), Recipe("fp16", "float16"),
                               Recipe("bf16", "bfloat16")]}


def get_recipe(recipe: str | Recipe = "baseline", dtype: str | None = None) -> Recipe:
    """A named recipe, optionally with its dtype overridden (``--dtype``)."""
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}: choose one of {', '.join(RECIPES)}")
        recipe = RECIPES[recipe]
    if dtype is not None and DTYPES.get(dtype, dtype) != recipe.dtype:
        base = "baseline" if recipe.name == "baseline" else recipe.name
        recipe = replace(recipe, name=f"{base}[{DTYPES.get(dtype, dtype)}]", dtype=dtype)
    return recipe
