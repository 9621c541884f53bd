"""Checks that a checkpoint holds the weights it declares, whatever its format: transformers would
build a model of the declared size and fill what is missing with random weights."""

from pathlib import Path

from ..errors import Errors, ModelError


def numbered_0_to(indices: set[int], declared: int) -> bool:
    """Whether `indices` are exactly 0 .. declared - 1 (without building that range: declared may be 1e7)."""
    return len(indices) == declared and (not indices or (min(indices) == 0 and max(indices) == declared - 1))


def loaded_in_full(model, loading_info: dict, path: Path):
    """`model`, unless transformers found no weights for some of it and initialised them randomly."""
    missing = sorted(loading_info.get("missing_keys") or [])
    if missing:
        raise ModelError(Errors.E053.format(path=path, names=some_of(missing)))
    return model


def some_of(names: list[str]) -> str:
    """The first three of `names` and how many there are: enough to recognise a pattern."""
    return f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''} ({len(names)} in all)"
