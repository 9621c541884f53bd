"""Pipeline configs: spaCy's config format plus an [nlpipe] section that carries the batch job."""

import configparser
import re
from dataclasses import dataclass, fields
from pathlib import Path

import spacy
from confection import ConfigValidationError
from spacy import util
from spacy.language import Language
from spacy.util import registry

from .components.spacy_models import copy_lookups, resolve_spacy_model
from .errors import ConfigError, Errors, NlpipeError, first_line
from .io.docbin import is_docbin
from .io.readers import MAX_DOCUMENT_CHARS
from .llm import catalog
from .llm.engine import Llama
from .llm.fake import FakeLlama


@dataclass(frozen=True)
class JobSettings:
    """The [nlpipe] section: what to run the pipeline on. CLI flags override it (a changed copy:
    `dataclasses.replace`, or `Job.replace` in nlpipe.jobs, which checks the new values)."""

    spacy_model: str | None = None  # referenced by the components' `source` through ${nlpipe.spacy_model}
    input: str | None = None
    output: str | None = None
    questions: str | None = None
    batch_size: int = 32
    annotations: bool = False
    n_process: int = 1  # processes for the spaCy stage; the LLM stage stays in this one
    max_document_chars: int = MAX_DOCUMENT_CHARS  # a longer document becomes an error record
    engine: str = "local"  # "local" (this process) or "ray" (an actor pool on Ray Data)
    workers: int | None = None  # Ray actors, each holding one pipeline; None: as many as resources allow
    gpus_per_worker: float = 0.0  # Ray: GPUs each actor reserves (fractions share a GPU)
    ray_address: str | None = None  # Ray: cluster to join; None: $RAY_ADDRESS, else a local Ray

    @property
    def writes_annotations(self) -> bool:
        """Whether records carry tokens, tags and parses: asked for, or a `.spacy` output, whose
        Docs are built from the annotations in the records (so any engine's records will do)."""
        return self.annotations or (self.output is not None and is_docbin(self.output))


JOB_KEYS = [f.name for f in fields(JobSettings)]
ENGINES = ("local", "ray")
PIPELINES = Path(__file__).parent / "pipelines"  # package data: the built-in pipelines by name


def builtin_pipelines() -> list[str]:
    return sorted(path.stem for path in PIPELINES.glob("*.cfg"))


def config_file(name_or_path) -> Path:
    """A config file's path, or the name of a built-in pipeline (`qa`, `annotate`)."""
    path = Path(name_or_path)
    builtin = PIPELINES / f"{name_or_path}.cfg"
    if path.is_file():
        return path
    if len(path.parts) == 1 and not path.suffix and builtin.is_file():
        return builtin
    raise ConfigError(Errors.E001.format(path=path, builtin=", ".join(builtin_pipelines())))


def load_config(path, overrides: dict | None = None) -> util.Config:
    """Read `path`, apply dotted overrides (`components.llama_qa.model.device`), interpolate."""
    path = config_file(path)
    # Measured before it is filled in: a config whose variables repeat each other would fill memory.
    refuse_interpolation_bombs(_read_config(path, overrides, interpolate=False))
    config = _read_config(path, overrides, interpolate=True)
    refuse_huge_integers(config)
    return config


def _read_config(path: Path, overrides: dict | None, interpolate: bool) -> util.Config:
    try:
        return util.load_config(path, overrides=overrides or {}, interpolate=interpolate)
    except ConfigValidationError as err:
        if err.errors:
            raise ConfigError(_describe(err)) from None
        # Parse errors arrive with no per-key errors, the reason only in the description.
        reason = (err.desc or err.title or "").strip().splitlines()
        raise ConfigError(Errors.E020.format(path=path, reason=" ".join(r for r in reason[-3:] if r))) from None
    except Exception as err:  # configparser raises a dozen error types for a malformed file
        raise ConfigError(Errors.E020.format(path=path, reason=(str(err).strip().splitlines() or [type(err).__name__])[-1])) from None


# What the values of a config may come to once every ${...} is filled in: far beyond any real
# config (a few kB), far below what a variable repeating the one before it ten times, level
# after level, fills in (gigabytes, then MemoryError).
MAX_INTERPOLATED_CHARS = 10_000_000
# How deep references may nest while they are measured: beyond confection's own limit (10), which
# fails such a config anyway; it only keeps the measuring (and a reference cycle) bounded.
MAX_REFERENCE_DEPTH = 50
REFERENCE = re.compile(r"\$\{([^}]+)\}")  # what configparser's ExtendedInterpolation fills in


def refuse_interpolation_bombs(raw: util.Config) -> None:
    """E060, naming the biggest value, when the values of the uninterpolated config `raw` would
    come to more than MAX_INTERPOLATED_CHARS once interpolated: measured, never built."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys keep their case, as confection reads them
    parser.read_string(raw.to_str(interpolate=False))
    sizes: dict[tuple[str, str], int] = {}
    values = [(section, key) for section in parser.sections() for key in parser[section]]
    total = sum(_filled_size(parser, section, key, sizes, 1) for section, key in values)
    if total > MAX_INTERPOLATED_CHARS:
        section, key = max(values, key=sizes.__getitem__)
        raise ConfigError(Errors.E060.format(section=section, message=(
            f"{key} would be {sizes[section, key]:,} characters once its ${{...}} references are filled in "
            f"(the config {total:,}, over the {MAX_INTERPOLATED_CHARS:,} it may hold); a variable repeats "
            "another over and over")))


def _filled_size(parser: configparser.ConfigParser, section: str, key: str, sizes: dict, depth: int) -> int:
    """The characters of `key` in `section` with its references filled in, where each reference
    also counts its own text, so that references to empty values add up too (as the work does)."""
    if (section, key) not in sizes:
        if depth > MAX_REFERENCE_DEPTH:
            raise ConfigError(Errors.E060.format(section=section, message=(
                f"{key}: its ${{...}} references nest more than {MAX_REFERENCE_DEPTH} deep (or in a cycle)")))
        value = parser.get(section, key, raw=True)
        referenced = (_referenced(parser, section, value, name) for name in REFERENCE.findall(value))
        sizes[section, key] = len(value) + sum(_filled_size(parser, *place, sizes, depth + 1)
                                               for place in referenced if place)
    return sizes[section, key]


def _referenced(parser: configparser.ConfigParser, section: str, value: str, name: str) -> tuple[str, str] | None:
    """The (section, key) that the reference `name` in `value` is filled in from, as confection
    resolves it; None for a whole section or nothing (confection fills in one, refuses the other)."""
    path = name.replace(":", ".").rsplit(".", 1)
    place, option = (section, path[0]) if len(path) == 1 else path
    if not parser.has_option(place, option):
        return None
    if len(path) == 1 and parser.get(place, option, raw=True).strip() == value.strip():
        return None  # a key of this section holding this very text: confection takes it for a section
    return place, option


INT64 = 2**63


def refuse_huge_integers(block, section: str = "") -> None:
    """E060 for a whole number beyond 64 bits, which no setting needs and spaCy's JSON check of a
    component's settings fails on (SystemError, OverflowError) instead of naming it."""
    for key, value in block.items() if isinstance(block, dict) else enumerate(block):
        if isinstance(value, (dict, list)):
            refuse_huge_integers(value, f"{section}.{key}" if isinstance(block, dict) and section else
                                 (section or str(key)))
        elif isinstance(value, int) and not -INT64 <= value < INT64:
            raise ConfigError(Errors.E060.format(section=section or "config", message=(
                f"{key} is a whole number of {value.bit_length()} bits, beyond any setting's 64")))


def job_settings(config: util.Config) -> JobSettings:
    return checked_settings(dict(config.get("nlpipe", {})))


def checked_settings(section: dict) -> JobSettings:
    """JobSettings of an [nlpipe] section's values, or ConfigError with every problem."""
    problems = settings_problems(section)
    if problems:
        raise ConfigError("\n".join(problems))
    return JobSettings(**section)


def qa_component_names(config: util.Config) -> list[str]:
    """The config's question-answering components (factory llama_qa), whatever they are named."""
    return [name for name, block in config.get("components", {}).items() if block.get("factory") == "llama_qa"]


def settings_problems(section: dict) -> list[str]:
    """Every problem of the [nlpipe] section."""
    unknown = sorted(set(section) - set(JOB_KEYS))
    problems = [Errors.E003.format(key=key, known=", ".join(JOB_KEYS)) for key in unknown]
    for key in ("batch_size", "n_process", "max_document_chars"):
        value = section.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(Errors.E002.format(section="nlpipe", key=key, message="must be a positive integer"))
    if not isinstance(section.get("annotations", False), bool):
        problems.append(Errors.E002.format(section="nlpipe", key="annotations", message="must be true or false"))
    return problems + _engine_problems(section)


def _engine_problems(section: dict) -> list[str]:
    """Problems of the [nlpipe] keys that choose and size the engine."""
    problems = []
    if section.get("engine", "local") not in ENGINES:
        problems.append(("engine", f"must be one of {', '.join(ENGINES)}"))
    workers = section.get("workers")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        problems.append(("workers", "must be a positive integer (or null: as many as resources allow)"))
    gpus = section.get("gpus_per_worker", 0.0)
    if not isinstance(gpus, (int, float)) or isinstance(gpus, bool) or gpus < 0:
        problems.append(("gpus_per_worker", "must be a number >= 0 (fractions share a GPU)"))
    return [Errors.E002.format(section="nlpipe", key=key, message=message) for key, message in problems]


def spacy_part(config: util.Config) -> util.Config:
    """The config spaCy sees: no [nlpipe] section, `source` names mapped to installed packages."""
    config = util.Config({k: v for k, v in config.items() if k != "nlpipe"})
    for block in config.get("components", {}).values():
        if isinstance(block.get("source"), str):
            block["source"] = resolve_spacy_model(block["source"])
    return config


def build_pipeline(config: util.Config) -> Language:
    spacy_config = spacy_part(config)
    try:
        nlp = util.load_model_from_config(spacy_config, auto_fill=True, validate=True)
    except (ConfigValidationError, ValueError, KeyError, TypeError) as err:
        # validate()'s checks, block by block, say where the problem is and find all of them.
        problems = pipeline_problems(config) or [Errors.E060.format(section="nlp", message=first_line(err))]
        raise ConfigError("\n".join(problems)) from None
    copy_lookups(nlp, {block["source"] for block in spacy_config.get("components", {}).values() if "source" in block})
    return nlp


_NOT_A = re.compile(r"^(?:at root: )?(?P<value>.+?) is not (?P<kind>typing\.Literal\[(?P<options>.*)\]|<class '(?P<cls>[\w.]+)'>)$",
                    re.S)
_KINDS = {"PositiveInt": "a positive integer", "NonNegativeInt": "an integer, 0 or more", "int": "an integer",
          "PositiveFloat": "a positive number", "NonNegativeFloat": "a number, 0 or more", "float": "a number",
          "ConstrainedFloatValue": "a number within the range the config's comment gives",
          "ConstrainedIntValue": "an integer within the range the config's comment gives",
          "ConstrainedStrValue": "one of the values the config's comment gives", "str": "a string",
          "bool": "true or false"}


def plain_message(message: str) -> str:
    """pydantic's "-1 is not <class 'pydantic.v1.types.PositiveInt'>" said the way a person
    would: "must be a positive integer, not -1"."""
    found = _NOT_A.match(message.strip())
    if found is None:
        return message
    if found["options"] is not None:
        return f"must be one of {found['options']}, not {found['value']}"
    kind = _KINDS.get(found["cls"].rsplit(".", 1)[-1])
    return f"must be {kind}, not {found['value']}" if kind else message


def _describe(err: ConfigValidationError) -> str:
    problems = [Errors.E002.format(section=".".join(str(p) for p in e["loc"][:-1]) or err.title or "config",
                                   key=e["loc"][-1] if e["loc"] else "", message=plain_message(e["msg"]))
                for e in (err.errors or [])]
    return "\n".join(problems) or first_line(err)


def validate(path, overrides: dict | None = None) -> list[str]:
    """Every problem in the config, each naming its section: the checks a run makes, all of them."""
    try:
        config = load_config(path, overrides)
    except NlpipeError as err:
        return [str(err)]
    return settings_problems(dict(config.get("nlpipe", {}))) + pipeline_problems(config)


def pipeline_problems(config: util.Config) -> list[str]:
    """Build each component of the pipeline alone, as spaCy would, and each registered block
    inside it alone, so that one bad value does not hide the others."""
    components = config.get("components", {})
    lang = config.get("nlp", {}).get("lang", "en")
    problems = []
    for name in config.get("nlp", {}).get("pipeline", []):
        if name not in components:
            problems.append(Errors.E002.format(section="nlp", key="pipeline",
                                               message=f"'{name}' has no [components.{name}] block"))
        else:
            problems.extend(_component_problems(lang, name, dict(components[name])))
    return problems


def _component_problems(lang: str, name: str, block: dict) -> list[str]:
    section = f"components.{name}"
    source = block.pop("source", None)
    if isinstance(source, str):
        try:
            resolve_spacy_model(source)
            return []
        except NlpipeError as err:
            return [f"[{section}] source: {err}"]
    factory = block.pop("factory", None)
    if factory is None:
        return [Errors.E002.format(section=section, key="factory", message="missing (or give source)")]
    nlp = spacy.blank(lang)  # also makes spaCy import its built-in and entry-point factories
    if not nlp.has_factory(factory):
        return [Errors.E002.format(section=section, key="factory", message=f"unknown factory '{factory}'")]
    defaults = nlp.get_factory_meta(factory).default_config
    problems = []
    for key, value in block.items():
        nested = _registered_problems(value, f"{section}.{key}")
        if nested:
            problems.extend(nested)
            if key not in defaults:
                return problems  # nothing to build the component with
            block[key] = defaults[key]  # check the component's own values with a good block here
    build = lambda config: nlp.add_pipe(factory, name=name, config=config, validate=True)  # noqa: E731
    return problems + _build_problems(build, block, section)[1]


def _registered_problems(block, section: str) -> list[str]:
    """Problems of a registered-function block (`@misc = ...`) and of the blocks inside it."""
    if not (isinstance(block, dict) and any(key.startswith("@") for key in block)):
        return []
    problems = [p for key, value in block.items() for p in _registered_problems(value, f"{section}.{key}")]
    if problems:
        return problems  # its function needs its parts
    built, problems = _build_problems(lambda config: registry.resolve({"block": config}, validate=True)["block"],
                                      block, section)
    return problems + (_model_problems(built, section) if isinstance(built, Llama) else [])


def _model_problems(llm: Llama, section: str) -> list[str]:
    """A model path that is neither there nor a model nlpipe fetches on first use (a fake's path
    only names it)."""
    if isinstance(llm, FakeLlama):
        return []
    folder = catalog.locate(llm.path)
    if folder.exists() or folder.name in catalog.LLM_MODELS:
        return []
    return [Errors.E002.format(section=section, key="path", message=Errors.E013.format(path=llm.path))]


def _build_problems(build, block: dict, section: str) -> tuple[object, list[str]]:
    """What `build(block)` (spaCy or confection building from a config block) returns, and what it
    objects to, as lines naming `section`. Keys it refuses are dropped (their defaults stand in)
    and it builds again, so that a bad value does not hide a check made after it."""
    block, dropped, problems = dict(block), set(), []
    while True:
        try:
            return build(block), problems
        except ConfigValidationError as err:
            # Errors locate keys from the block's own root, which `section` replaces.
            errors = [e for e in err.errors or [] if e["loc"][1:2] and e["loc"][1] not in dropped]
            problems += [Errors.E002.format(section=".".join([section, *map(str, e["loc"][1:-1])]),
                                            key=e["loc"][-1], message=plain_message(e["msg"])) for e in errors]
            refused = {e["loc"][1] for e in errors if len(e["loc"]) == 2 and e["loc"][1] in block}
            if not refused:
                return None, problems or [Errors.E060.format(section=section, message=first_line(err))]
            dropped |= refused
            block = {key: value for key, value in block.items() if key not in refused}
        except NlpipeError as err:
            return None, problems + [Errors.E060.format(section=section, message=str(err))]
        except (ValueError, TypeError, KeyError) as err:  # a registered function refusing a value
            return None, problems + [Errors.E060.format(section=section, message=first_line(err))]
