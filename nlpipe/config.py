"""Pipeline configs: spaCy's config format plus an [nlpipe] section that carries the batch job."""

import inspect
from dataclasses import dataclass, fields
from pathlib import Path

import spacy
from confection import ConfigValidationError
from pydantic import TypeAdapter, ValidationError
from spacy import util
from spacy.language import Language
from spacy.util import registry

from .components.spacy_models import resolve_spacy_model
from .errors import ConfigError, Errors, NlpipeError
from .llm import catalog


@dataclass
class JobSettings:
    """The [nlpipe] section: what to run the pipeline on. CLI flags override it."""

    spacy_model: str | None = None  # referenced by the components' `source` through ${nlpipe.spacy_model}
    input: str | None = None
    output: str | None = None
    questions: str | None = None
    batch_size: int = 32
    annotations: bool = False
    n_process: int = 1  # processes for the spaCy stage; the LLM stage stays in this one
    engine: str = "local"  # "local" (this process) or "ray" (an actor pool on Ray Data)
    workers: int | None = None  # Ray actors, each holding one pipeline; None: as many as resources allow
    gpus_per_worker: float = 0.0  # Ray: GPUs each actor reserves (fractions share a GPU)
    ray_address: str | None = None  # Ray: cluster to join; None: $RAY_ADDRESS, else a local Ray


JOB_KEYS = [f.name for f in fields(JobSettings)]
ENGINES = ("local", "ray")


def load_config(path, overrides: dict | None = None) -> util.Config:
    """Read `path`, apply dotted overrides (`components.llama_qa.model.device`), interpolate."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(Errors.E001.format(path=path))
    try:
        return util.load_config(path, overrides=overrides or {}, interpolate=True)
    except ConfigValidationError as err:
        if err.errors:
            raise ConfigError(_describe(err)) from None
        # Parse errors arrive with no per-key errors, the reason only in the description.
        reason = (err.desc or err.title or "").strip().splitlines()
        raise ConfigError(Errors.E020.format(path=path, reason=" ".join(r for r in reason[-3:] if r))) from None
    except Exception as err:  # configparser raises a dozen error types for a malformed file
        raise ConfigError(Errors.E020.format(path=path, reason=str(err).strip().splitlines()[-1])) from None


def job_settings(config: util.Config) -> JobSettings:
    section = dict(config.get("nlpipe", {}))
    unknown = sorted(set(section) - set(JOB_KEYS))
    if unknown:
        raise ConfigError(Errors.E003.format(key=unknown[0], known=", ".join(JOB_KEYS)))
    settings = JobSettings(**section)
    if not isinstance(settings.batch_size, int) or isinstance(settings.batch_size, bool) or settings.batch_size < 1:
        raise ConfigError(Errors.E002.format(section="nlpipe", key="batch_size",
                                             message="must be a positive integer"))
    if not isinstance(settings.n_process, int) or isinstance(settings.n_process, bool) or settings.n_process < 1:
        raise ConfigError(Errors.E002.format(section="nlpipe", key="n_process",
                                             message="must be a positive integer"))
    if not isinstance(settings.annotations, bool):
        raise ConfigError(Errors.E002.format(section="nlpipe", key="annotations", message="must be true or false"))
    _check_engine_settings(settings)
    return settings


def _check_engine_settings(settings: JobSettings) -> None:
    def problem(key: str, message: str) -> ConfigError:
        return ConfigError(Errors.E002.format(section="nlpipe", key=key, message=message))

    if settings.engine not in ENGINES:
        raise problem("engine", f"must be one of {', '.join(ENGINES)}")
    workers = settings.workers
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise problem("workers", "must be a positive integer (or null: as many as resources allow)")
    gpus = settings.gpus_per_worker
    if not isinstance(gpus, (int, float)) or isinstance(gpus, bool) or gpus < 0:
        raise problem("gpus_per_worker", "must be a number >= 0 (fractions share a GPU)")


def spacy_part(config: util.Config) -> util.Config:
    """The config spaCy sees: no [nlpipe] section, `source` names mapped to installed packages."""
    config = util.Config({k: v for k, v in config.items() if k != "nlpipe"})
    for block in config.get("components", {}).values():
        if isinstance(block.get("source"), str):
            block["source"] = resolve_spacy_model(block["source"])
    return config


def build_pipeline(config: util.Config) -> Language:
    config = spacy_part(config)
    try:
        return util.load_model_from_config(config, auto_fill=True, validate=True)
    except ConfigValidationError as err:
        # spaCy reports a component's keys relative to it ('llama_qa.model'): name the section as in the file.
        raise ConfigError(_describe(err, prefix="components.")) from None
    except (ValueError, KeyError) as err:  # spaCy reports unknown factories and bad pipelines so
        raise ConfigError(Errors.E002.format(section="nlp", key="pipeline", message=_first_line(err))) from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]


def _describe(err: ConfigValidationError, prefix: str = "") -> str:
    problems = [Errors.E002.format(section=prefix + ".".join(str(p) for p in e["loc"][:-1]) or err.title or "config",
                                   key=e["loc"][-1] if e["loc"] else "", message=e["msg"])
                for e in (err.errors or [])]
    return "\n".join(problems) or _first_line(err)


def validate(path, overrides: dict | None = None) -> list[str]:
    """Every problem in the config, each naming its section and key; empty when it is fine."""
    try:
        config = load_config(path, overrides)
    except NlpipeError as err:
        return [str(err)]
    problems = []
    section = dict(config.get("nlpipe", {}))
    for key in sorted(set(section) - set(JOB_KEYS)):
        problems.append(Errors.E003.format(key=key, known=", ".join(JOB_KEYS)))
    if not problems:
        try:
            job_settings(config)
        except NlpipeError as err:
            problems.append(str(err))
    components = config.get("components", {})
    pipeline = config.get("nlp", {}).get("pipeline", [])
    # spaCy imports its built-in and entry-point factories when the first pipeline is made;
    # has_factory() alone does not trigger that.
    spacy.blank(config.get("nlp", {}).get("lang", "en"))
    for name in pipeline:
        if name not in components:
            problems.append(Errors.E002.format(section="nlp", key="pipeline",
                                               message=f"'{name}' has no [components.{name}] block"))
            continue
        problems.extend(_component_problems(name, dict(components[name])))
    return problems


def _component_problems(name: str, block: dict) -> list[str]:
    section = f"components.{name}"
    if "source" in block:
        try:
            resolve_spacy_model(block["source"])
            return []
        except NlpipeError as err:
            return [f"[{section}] source: {err}"]
    factory = block.pop("factory", None)
    if factory is None:
        return [Errors.E002.format(section=section, key="factory", message="missing (or give source)")]
    if not Language.has_factory(factory):
        return [Errors.E002.format(section=section, key="factory", message=f"unknown factory '{factory}'")]
    meta = Language.get_factory_meta(factory)
    filled = {**meta.default_config, **block}
    problems = _block_problems(registry.factories.get(factory), filled, section, skip=("nlp", "name"))
    model = filled.get("model")
    if factory == "llama_qa" and isinstance(model, dict):
        path = Path(model.get("path", "models/smollm2-135m"))
        if not path.exists() and path.name not in catalog.LLM_MODELS:
            problems.append(Errors.E002.format(section=f"{section}.model", key="path",
                                               message=Errors.E013.format(path=path)))
    return problems


def _block_problems(func, block: dict, section: str, skip=()) -> list[str]:
    """Check `block` against `func`'s signature, recursing into registered-function blocks,
    so that every bad key is reported, not only the first one."""
    params = {n: p for n, p in inspect.signature(func).parameters.items() if n not in skip}
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params.values())
    problems = []
    for key, value in block.items():
        if key.startswith("@"):
            continue
        if key not in params:
            if not takes_kwargs:
                problems.append(Errors.E002.format(section=section, key=key, message="unknown key"))
            continue
        if isinstance(value, dict):
            problems.extend(_registered_problems(value, f"{section}.{key}"))
        else:
            problems.extend(_type_problems(params[key].annotation, value, section, key))
    for key, param in params.items():
        if key not in block and param.default is param.empty and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            problems.append(Errors.E002.format(section=section, key=key, message="missing"))
    return problems


def _registered_problems(block: dict, section: str) -> list[str]:
    references = [k for k in block if k.startswith("@")]
    if not references:
        return []
    registry_name, func_name = references[0][1:], block[references[0]]
    try:
        func = registry.get(registry_name, func_name)
    except Exception:
        return [Errors.E002.format(section=section, key=references[0],
                                   message=f"no function '{func_name}' in registry '{registry_name}'")]
    return _block_problems(func, block, section)


def _type_problems(annotation, value, section: str, key: str) -> list[str]:
    if annotation is inspect.Parameter.empty:
        return []
    try:
        adapter = TypeAdapter(annotation)
    except Exception:  # a type pydantic cannot check (a thinc Model, say): leave it to spaCy
        return []
    try:
        adapter.validate_python(value, strict=isinstance(value, str) and annotation is not str)
    except ValidationError as err:
        return [Errors.E002.format(section=section, key=key, message=err.errors()[0]["msg"])]
    return []
