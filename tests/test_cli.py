"""The nlpipe command line, through click's CliRunner (stdout and stderr captured apart)."""

import json
import re
import shutil
from pathlib import Path

import click
import pytest
import spacy
import torch
from click.testing import CliRunner
from rich.console import Console

import nlpipe.cli as cli
import nlpipe.display as display
from nlpipe import __version__
from nlpipe.cli import main, parse_overrides

from .conftest import fake_overrides

REPO = Path(__file__).resolve().parents[1]
QA_CFG = str(REPO / "pipelines" / "qa.cfg")
ANNOTATE_CFG = str(REPO / "pipelines" / "annotate.cfg")


@pytest.fixture(scope="module", autouse=True)
def factories_loaded():
    spacy.blank("en")  # see tests/test_config.py::test_validate_in_a_fresh_process


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """The rich consoles wrap at 80 columns when not on a terminal; messages are checked whole."""
    monkeypatch.setenv("COLUMNS", "1000")  # what rich reads for a console's width at every print


def tables_at(columns: int, monkeypatch) -> None:
    """The CLI's tables (stdout) printed at `columns`; its messages (stderr) stay whole."""
    monkeypatch.setattr(display, "tables", Console(width=columns))
    monkeypatch.setattr(cli, "tables", display.tables)


@pytest.fixture()
def runner():
    return CliRunner()


@pytest.fixture()
def override_args(qa_overrides):
    return as_args(qa_overrides)


def as_args(overrides: dict) -> list[str]:
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", (value if isinstance(value, str) else json.dumps(value))]
    return args


@pytest.fixture()
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "tower.txt").write_text("The Eiffel Tower is in Paris. It opened in 1889.", encoding="utf-8")
    (folder / "bowl.md").write_text("Super Bowl 50 was played at Levi's Stadium.", encoding="utf-8")
    return folder


@pytest.fixture()
def questions(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text("Where is it?\nWhen was it?\n", encoding="utf-8")
    return path


@pytest.fixture()
def built(monkeypatch):
    """The pipelines the CLI builds, for checking that overrides reached them."""
    import nlpipe.config

    pipelines = []
    original = nlpipe.config.build_pipeline

    def spy(config):
        pipelines.append(original(config))
        return pipelines[-1]
    monkeypatch.setattr(nlpipe.config, "build_pipeline", spy)
    return pipelines


@pytest.fixture()
def fake_paris() -> list[str]:
    """Overrides for a model that replies 'Paris' to everything, with a weight on the reply, so
    that every question gets one (grounded mode would otherwise only score the candidates of
    span questions)."""
    return as_args({**fake_overrides(reply="Paris", reply_logprob=-0.5),
                    "components.llama_qa.selector.weights.reply": 1.0})


def lines(text):
    return [line for line in text.splitlines() if line.strip()]


def test_run_writes_one_line_per_document(runner, override_args, docs, questions, tmp_path, built):
    output = tmp_path / "answers.jsonl"
    result = runner.invoke(main, ["run", QA_CFG, "--input", str(docs), "--output", str(output),
                                  "--questions", str(questions), *override_args,
                                  "--components.llama_qa.model.max_new_tokens", "4"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in lines(output.read_text(encoding="utf-8"))]
    assert [r["id"] for r in records] == ["bowl.md", "tower.txt"]
    assert all(len(r["answers"]) == 2 for r in records)
    assert result.stdout == ""  # the JSONL went to the file; progress and summary to stderr
    assert "documents" in result.stderr and str(output) in result.stderr
    assert built[0].get_pipe("llama_qa").llm.max_new_tokens == 4


def test_run_with_equals_overrides_and_flags(runner, override_args, docs, tmp_path, built):
    output = tmp_path / "out.jsonl"
    result = runner.invoke(main, ["run", QA_CFG, "--input", str(docs), "--output", str(output), *override_args,
                                  "--components.llama_qa.questions=[\"Where?\"]", "--batch-size", "1",
                                  "--annotations"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in lines(output.read_text(encoding="utf-8"))]
    assert all([a["question"] for a in r["answers"]] == ["Where?"] for r in records)
    assert all("tokens" in r for r in records)
    assert built[0].get_pipe("llama_qa").questions == ["Where?"]


def test_run_output_to_stdout(runner, override_args, docs, questions):
    result = runner.invoke(main, ["run", QA_CFG, "--input", str(docs), "--output", "-",
                                  "--questions", str(questions), *override_args])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in lines(result.stdout)]  # nothing else on stdout
    assert [r["id"] for r in records] == ["bowl.md", "tower.txt"]
    assert "nlpipe run" in result.stderr


def test_run_input_from_config_and_stdin(runner, fake_paris):
    result = runner.invoke(main, ["run", QA_CFG, *fake_paris, "--nlpipe.input", "-", "--nlpipe.output", "-",
                                  "--components.llama_qa.questions", '["Where is it?"]'],
                           input="The tower is in Paris.\n")
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in lines(result.stdout)]
    assert record["id"] == "stdin:1"
    assert record["answers"][0]["text"] == "Paris" and record["answers"][0]["start_char"] == 16


def test_run_with_a_bad_override_value_is_one_line_exit_2(runner, override_args, docs, tmp_path):
    result = runner.invoke(main, ["run", QA_CFG, "--input", str(docs), "--output", str(tmp_path / "o.jsonl"),
                                  *override_args, "--components.llama_qa.model.max_new_tokens", "lots"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [message] = lines(result.stderr)
    assert message.startswith("error: E002") and "max_new_tokens" in message
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("args,code", [
    (["--output", "o.jsonl"], "E006"),  # no input
    (["--input", "docs"], "E007"),  # no output
    (["--input", "no-such-folder", "--output", "-"], "E008"),
])
def test_run_usage_problems_exit_2(runner, override_args, docs, args, code, monkeypatch):
    monkeypatch.chdir(docs.parent)
    result = runner.invoke(main, ["run", QA_CFG, *args, *override_args])
    assert result.exit_code == 2, result.output
    assert code in result.stderr and "Traceback" not in result.output


def test_run_with_missing_config_exit_2(runner, tmp_path):
    result = runner.invoke(main, ["run", str(tmp_path / "none.cfg"), "--input", ".", "--output", "-"])
    assert result.exit_code == 2 and "E001" in result.stderr


def test_run_with_a_malformed_override_is_a_usage_error(runner):
    result = runner.invoke(main, ["run", QA_CFG, "--input", ".", "--output", "-", "--nodot", "1"])
    assert result.exit_code == 2 and "config overrides look like" in result.stderr


def test_run_with_a_bad_file_exits_1(runner, override_args, docs, questions, tmp_path):
    (docs / "broken.txt").write_bytes(b"\x00\x00binary")
    output = tmp_path / "answers.jsonl"
    result = runner.invoke(main, ["run", QA_CFG, "--input", str(docs), "--output", str(output),
                                  "--questions", str(questions), *override_args])
    assert result.exit_code == 1, result.output
    records = [json.loads(line) for line in lines(output.read_text(encoding="utf-8"))]
    assert [r["id"] for r in records] == ["bowl.md", "broken.txt", "tower.txt"]
    assert records[1]["error"]["type"] == "binary_file"
    assert "answers" in records[0] and "answers" in records[2]


def test_run_verbose_raises(runner, override_args, docs):
    result = runner.invoke(main, ["run", QA_CFG, "--verbose", "--output", "-", *override_args])
    assert result.exit_code == 1
    assert type(result.exception).__name__ == "InputError"


def test_run_annotate_pipeline(runner, docs, tmp_path):
    output = tmp_path / "ann.jsonl"
    result = runner.invoke(main, ["run", ANNOTATE_CFG, "--input", str(docs / "tower.txt"), "--output", str(output)])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in lines(output.read_text(encoding="utf-8"))]
    assert record["tokens"][0]["text"] == "The" and record["tokens"][0]["pos"] == "DET"


def test_ask_with_text(runner, fake_paris):
    text = "The Eiffel Tower is in Paris."
    result = runner.invoke(main, ["ask", QA_CFG, "Where is the Eiffel Tower?", "--text", text, *fake_paris])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Paris\n"
    assert "characters 23–28 of the document" in result.stderr
    assert "evidence: The Eiffel Tower is in Paris." in result.stderr


def test_ask_with_file_and_json(runner, fake_paris, tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text("Gustave Eiffel's company built it in Paris.", encoding="utf-8")
    result = runner.invoke(main, ["ask", QA_CFG, "Where was it built?", "--file", str(path), "--json",
                                  *fake_paris])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["question"] == "Where was it built?"
    assert (answer["text"], answer["start_char"], answer["end_char"]) == ("Paris", 37, 42)
    assert answer["logprob"] == -0.5 and answer["generated"] == "Paris"


def test_ask_with_the_tiny_model(runner, override_args):
    result = runner.invoke(main, ["ask", QA_CFG, "Where?", "--text", "Paris is in France.", "--json",
                                  *override_args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["question"] == "Where?"


def test_ask_several_questions_builds_the_pipeline_once_and_prints_one_table(runner, fake_paris,
                                                                           built):
    text = "The Eiffel Tower is in Paris."
    result = runner.invoke(main, ["ask", QA_CFG, "Where is it?", "Where is the tower?", "--text", text,
                                  *fake_paris])
    assert result.exit_code == 0, result.output
    assert len(built) == 1
    rows = [line for line in result.stdout.splitlines() if "Paris" in line]
    assert len(rows) == 2 and "Where is it?" in rows[0] and "Where is the tower?" in rows[1]
    assert all("23–28" in row for row in rows)
    as_json = runner.invoke(main, ["ask", QA_CFG, "Where is the tower?", "Where is it?", "--text", text, "--json",
                                   *fake_paris])
    assert [json.loads(line)["question"] for line in as_json.stdout.splitlines()] == ["Where is the tower?",
                                                                                      "Where is it?"]


def test_ask_reads_the_document_from_stdin(runner, fake_paris):
    result = runner.invoke(main, ["ask", QA_CFG, "Where is it?", "--file", "-", "--json", *fake_paris],
                           input="The Eiffel Tower is in Paris.")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["start_char"] == 23


def test_ask_without_a_question_is_a_usage_error(runner):
    for args in (["--text", "Paris."], ["  ", "--text", "Paris."]):
        result = runner.invoke(main, ["ask", QA_CFG, *args])
        assert result.exit_code == 2 and "give one or more questions" in result.stderr


def test_another_model_with_the_shipped_selector_weights_gets_one_warning_line(runner, fake_paris):
    result = runner.invoke(main, ["ask", QA_CFG, "Where is it?", "--text", "It is in Paris.", *fake_paris])
    assert result.exit_code == 0, result.output
    [warning] = [line for line in result.stderr.splitlines() if "W001" in line]
    assert warning.startswith("warning: W001") and "nlpipe fit SQUAD-FILE... --model" in warning


def test_ask_ungrounded_answer(runner):
    result = runner.invoke(main, ["ask", QA_CFG, "Why?", "--text", "Paris is in France.",
                                  *as_args(fake_overrides(reply="zebra"))])
    assert result.exit_code == 0, result.output
    assert result.stdout == "zebra\n" and "generated, not a span of the document" in result.stderr


@pytest.mark.parametrize("extra", [[], ["--text", "x", "--file", "f.txt"]])
def test_ask_needs_exactly_one_of_text_or_file(runner, extra):
    result = runner.invoke(main, ["ask", QA_CFG, "Where?", *extra])
    assert result.exit_code == 2 and "exactly one of --text or --file" in result.stderr


def test_ask_with_a_binary_file_exits_1(runner, tmp_path):
    path = tmp_path / "doc.txt"
    path.write_bytes(b"\x00\x01")
    result = runner.invoke(main, ["ask", QA_CFG, "Where?", "--file", str(path)])
    assert result.exit_code == 1 and "binary" in result.stderr


def test_ask_without_llama_qa(runner):
    result = runner.invoke(main, ["ask", ANNOTATE_CFG, "Where?", "--text", "Paris."])
    assert result.exit_code == 1 and "no llama_qa component" in result.stderr


def test_validate_good_config(runner):
    result = runner.invoke(main, ["validate", QA_CFG])
    assert result.exit_code == 0, result.output
    assert "is valid" in result.stdout


def test_validate_with_overrides(runner, tmp_path):
    result = runner.invoke(main, ["validate", QA_CFG, "--components.llama_qa.model.max_new_tokens", "lots",
                                  "--components.llama_qa.evidence.max_tokens", "many",
                                  "--components.llama_qa.model.path", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    problems = [line for line in lines(result.stdout) if line.startswith("✗")]
    assert len(problems) == 3, result.stdout
    for key in ("max_new_tokens", "max_tokens", "path"):
        assert any(key in p for p in problems)
    assert "3 problem(s)" in result.stdout


def test_validate_missing_file(runner, tmp_path):
    result = runner.invoke(main, ["validate", str(tmp_path / "x.cfg")])
    assert result.exit_code == 2 and "E001" in result.stdout


def test_messages_keep_their_section_names(runner, override_args, docs):
    result = runner.invoke(main, ["validate", QA_CFG, "--components.llama_qa.model.max_new_tokens", "lots",
                                  "--nlpipe.batchsize", "2"])
    assert "[components.llama_qa.model] max_new_tokens" in result.stdout
    assert "[nlpipe] section" in result.stdout
    result = runner.invoke(main, ["run", QA_CFG, "--input", str(docs), "--output", "-", *override_args,
                                  "--nlpipe.batch_size", "0"])
    assert result.exit_code == 2 and "[nlpipe] batch_size" in result.stderr


def test_info(runner):
    result = runner.invoke(main, ["info"])
    assert result.exit_code == 0, result.output
    for expected in (torch.__version__, spacy.__version__, __version__, "device (auto)", "smollm2-135m"):
        assert expected in result.stdout  # tables go to stdout: `nlpipe info > f` keeps them


def test_models_list(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("NLPIPE_MODELS", str(tmp_path))
    result = runner.invoke(main, ["models", "list"])
    assert result.exit_code == 0, result.output
    row = next(line for line in lines(result.stdout) if "smollm2-135m" in line)
    assert "missing" in row and "nlpipe models pull smollm2-135m" in row
    row = next(line for line in lines(result.stdout) if "en_core_web_sm" in line)
    assert "installed as en_core_web_sm" in row  # itself (aliases/en_core_web_sm) or its PyPI twin


def test_models_pull_unknown_name_exits_2(runner, tmp_path):
    result = runner.invoke(main, ["models", "pull", "gpt-17", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "E016" in result.stderr and "smollm2-135m" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_models_pull_with_a_fake_fetch(runner, tiny_llama_dir, tmp_path, monkeypatch):
    import nlpipe.llm.catalog as catalog

    calls = []

    def fake_pull(name, target, on_step=lambda *a: None):
        calls.append((name, Path(target)))
        for step, done, total in (("download", 0, 0), ("extract", 5, 10), ("extract", 10, 10),
                                  ("convert", 0, 0), ("check", 0, 0)):
            on_step(step, done, total)
        shutil.copytree(tiny_llama_dir, target)
        return Path(target)
    monkeypatch.setattr(catalog, "pull", fake_pull)
    result = runner.invoke(main, ["models", "pull", "smollm2-135m", "--dir", str(tmp_path / "models")])
    assert result.exit_code == 0, result.output
    target = tmp_path / "models" / "smollm2-135m"
    assert calls == [("smollm2-135m", target)]
    assert (target / "config.json").is_file()
    assert "smollm2-135m ready at" in result.stderr
    monkeypatch.setenv("NLPIPE_MODELS", str(tmp_path / "models"))
    listed = runner.invoke(main, ["models", "list"])
    row = next(line for line in lines(listed.stdout) if "smollm2-135m" in line)
    assert "present" in row


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_parse_overrides():
    assert parse_overrides(["--a.b", "1", "--c.d=x", "--e.f", '["q"]', "--g.h", "true"]) == {
        "a.b": 1, "c.d": "x", "e.f": ["q"], "g.h": True}
    with pytest.raises(click.UsageError, match="needs a value"):
        parse_overrides(["--a.b"])
    with pytest.raises(click.UsageError, match="unexpected argument"):
        parse_overrides(["--nodot", "1"])
    with pytest.raises(click.UsageError):
        parse_overrides(["positional"])


def test_ask_answers_the_asked_question_when_the_config_also_asks_it(runner, fake_paris):
    result = runner.invoke(main, ["ask", QA_CFG, "Where is it?", "--text", "Paris.", "--json", *fake_paris,
                                  "--components.llama_qa.questions", '["Where is it?", "Who built it?"]'])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["question"] == "Where is it?"


def test_ask_with_config_questions_answers_the_asked_one(runner, fake_paris):
    result = runner.invoke(main, ["ask", QA_CFG, "When was it?", "--text", "Paris.", "--json", *fake_paris,
                                  "--components.llama_qa.questions", '["Where is it?"]'])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["question"] == "When was it?"


def test_run_with_batch_size_0_is_rejected(runner, docs):
    result = runner.invoke(main, ["run", ANNOTATE_CFG, "--input", str(docs), "--output", "-", "--batch-size", "0"])
    assert result.exit_code == 2
    assert result.stdout == ""


def test_run_with_nlpipe_batch_size_0_in_the_config_is_rejected(runner, docs):
    result = runner.invoke(main, ["run", ANNOTATE_CFG, "--input", str(docs), "--output", "-",
                                  "--nlpipe.batch_size", "0"])
    assert result.exit_code == 2 and "batch_size" in result.stderr


def test_run_with_an_unwritable_output_is_one_line(runner, docs, tmp_path):
    result = runner.invoke(main, ["run", ANNOTATE_CFG, "--input", str(docs), "--output", str(tmp_path)])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 2


def test_models_list_reads_at_80_columns(runner, monkeypatch, tiny_llama_dir, tmp_path):
    shutil.copytree(tiny_llama_dir, tmp_path / "smollm2-135m")
    monkeypatch.setenv("NLPIPE_MODELS", str(tmp_path))
    tables_at(80, monkeypatch)
    result = runner.invoke(main, ["models", "list"])
    assert result.exit_code == 0, result.output
    table, folders = result.stdout.split("\n└")
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "…" not in result.stdout
    for name in ("smollm2-135m", "en_core_web_sm"):
        assert any(line.split("│")[1].strip() == name for line in result.stdout.splitlines() if "│" in line)
    # The folder on a line of its own, whole, however long: to copy.
    assert f"smollm2-135m folder: {tmp_path / 'smollm2-135m'}" in folders.splitlines()


@pytest.mark.parametrize("steps, shown, not_shown", [
    ([], "Loading the model", ("Fetching", "bytes")),  # present in the cache: nothing fetched
    ([("extract", 5_000_000, 10_000_000)], "Extracting GGUF", ()),
])
def test_loading_a_model_shows_a_fetch_only_when_there_is_one(monkeypatch, tmp_path, steps, shown, not_shown):
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from nlpipe.components.llama_qa import LLMPipe
    from nlpipe.processing import load_models

    class Model:
        path = tmp_path

        def load(self, on_step):
            for step in steps:
                on_step(*step)
    screen = io.StringIO()
    monkeypatch.setattr(display, "console", Console(file=screen, force_terminal=True, width=120))
    component = LLMPipe()
    component.llm = Model()
    load_models(SimpleNamespace(pipeline=[("llama_qa", component)]), display.Shown())
    assert shown in screen.getvalue() and not any(text in screen.getvalue() for text in not_shown)
    assert "5.0/10.0 MB" in screen.getvalue() or not steps


def test_models_pull_of_a_present_model_does_nothing_unless_forced(runner, monkeypatch, tiny_llama_dir, tmp_path):
    import nlpipe.llm.catalog as catalog

    shutil.copytree(tiny_llama_dir, tmp_path / "smollm2-135m")
    calls = []
    monkeypatch.setattr(catalog, "pull", lambda name, target, on_step=None: calls.append(name))
    result = runner.invoke(main, ["models", "pull", "smollm2-135m", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert calls == [] and "already at" in result.stderr and "--force" in result.stderr
    result = runner.invoke(main, ["models", "pull", "smollm2-135m", "--dir", str(tmp_path), "--force"])
    assert result.exit_code == 0, result.output
    assert calls == ["smollm2-135m"]


def test_ask_help_mentions_config_overrides(runner):
    result = runner.invoke(main, ["ask", "--help"])
    assert "--components.llama_qa" in result.stdout and "override" in result.stdout


def test_run_and_ask_a_builtin_pipeline_by_name_from_any_folder(runner, docs, tmp_path, monkeypatch,
                                                                 fake_paris):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, ["run", "annotate", "--input", str(docs), "--output", "out.jsonl"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    result = runner.invoke(main, ["ask", "qa", "Where is it?", "--text", "It is in Paris.", *fake_paris])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["validate", "qaa"])
    assert result.exit_code == 2 and "E001" in result.stdout and "annotate, qa" in result.stdout


def test_validate_reports_all_problems_and_exits_2(runner):
    result = runner.invoke(main, ["validate", "qa", "--components.llama_qa.mode", "generativ",
                                  "--components.llama_qa.selector.weights.nearr", "1", "--nlpipe.batch_size", "0"])
    assert result.exit_code == 2
    assert "3 problem(s)" in result.stdout
    for where in ("[components.llama_qa]", "[components.llama_qa.selector]", "[nlpipe] batch_size"):
        assert where in result.stdout


TWO_ARTICLES = {"version": "1.1", "data": [
    {"title": "Tower", "paragraphs": [
        {"context": "The Eiffel Tower is in Paris. It opened in 1889. Gustave Eiffel's company built it.",
         "qas": [{"id": "t1", "question": "Where is the tower?", "answers": [{"text": "Paris", "answer_start": 23}]},
                 {"id": "t2", "question": "Whose company built it?",
                  "answers": [{"text": "Gustave Eiffel's", "answer_start": 49}]}]},
        {"context": "The tower is 330 metres tall. It was the tallest structure until 1930.",
         "qas": [{"id": "t3", "question": "Until when was it the tallest?",
                  "answers": [{"text": "1930", "answer_start": 65}]}]}]},
    {"title": "Bowl", "paragraphs": [
        {"context": "Super Bowl 50 was played at Levi's Stadium in Santa Clara. The Denver Broncos won.",
         "qas": [{"id": "b1", "question": "Who won Super Bowl 50?",
                  "answers": [{"text": "The Denver Broncos", "answer_start": 59}]},
                 {"id": "b2", "question": "Where was it played?",
                  "answers": [{"text": "Levi's Stadium", "answer_start": 28}]}]},
        {"context": "Beyonce and Bruno Mars performed at halftime. Coldplay headlined the show.",
         "qas": [{"id": "b3", "question": "Who headlined the show?", "answers": [{"text": "Coldplay",
                                                                                  "answer_start": 46}]}]}]}]}


def test_fit_cross_validates_by_article_and_writes_weights_the_pipeline_uses(runner, qa_overrides, override_args,
                                                                              tmp_path, monkeypatch):
    data = tmp_path / "mine.json"
    data.write_text(json.dumps(TWO_ARTICLES), encoding="utf-8")
    weights = tmp_path / "weights.json"
    # --model is how another (larger) model takes over: the fit scores with it and says so.
    model = qa_overrides["components.llama_qa.model.path"]
    others = {k: v for k, v in qa_overrides.items() if k != "components.llama_qa.model.path"}
    tables_at(80, monkeypatch)
    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    result = runner.invoke(main, ["fit", str(data), "--output", str(weights), "--model", model, *as_args(others)])
    assert result.exit_code == 0, result.output
    assert "made one per answerable question" in result.stderr and "Reusing the recording" not in result.stderr
    assert "W001" not in result.stderr  # its advice is what is running
    # The shipped reader is SmolLM2's: for this model the fit goes on without its features, and says so.
    assert "Fitting without the reader's features: E087" in result.stderr
    assert_whole_at_80_columns(result.stdout, ["fold", "EM", "F1", "threshold", "HasAns", "NoAns", "SQuAD", "2.0 F1",
                                               "Tower", "Bowl"])  # one held-out fold per article
    written = json.loads(weights.read_text())
    assert written["format"] == "nlpipe.SelectorWeights.v3" and isinstance(written["lexicon"], dict)
    assert written["provenance"]["data"][0]["file"] == "mine.json"
    assert written["provenance"]["examples"]["articles"] == ["Bowl", "Tower"]
    assert written["provenance"]["model"] == model
    assert written["answerability"]["weights"] and 0 <= written["answerability"]["threshold"] <= 1
    assert not any(w for name, w in written["weights"].items() if name.startswith("reader_"))
    asked = runner.invoke(main, ["ask", QA_CFG, "Where is the tower?", "--text", "The tower is in Paris.", "--json",
                                 "--components.llama_qa.selector.weights_file", str(weights), *override_args])
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.stdout)["answerable"] in (True, False)
    assert "W001" not in asked.stderr  # weights fitted for this model
    # The recording (the hour on the pool) is kept: the same fit again reads it and fits the same
    # weights; other data, or a damaged recording, is recorded anew.
    again = tmp_path / "again.json"
    result = runner.invoke(main, ["fit", str(data), "--output", str(again), "--model", model, *as_args(others)])
    assert result.exit_code == 0 and "Reusing the recording" in result.stderr, result.output
    assert json.loads(again.read_text()) == written
    [kept] = (tmp_path / "cache" / "recordings").iterdir()
    kept.write_bytes(kept.read_bytes()[:50])
    result = runner.invoke(main, ["fit", str(data), "--output", str(again), "--model", model, *as_args(others)])
    assert result.exit_code == 0 and "Reusing the recording" not in result.stderr, result.output
    assert json.loads(again.read_text()) == written
    result = runner.invoke(main, ["fit", str(data), "--output", str(again), "--model", model, "--limit", "2",
                                  *as_args(others)])
    assert result.exit_code == 0 and "Reusing the recording" not in result.stderr, result.output
    assert len(list((tmp_path / "cache" / "recordings").iterdir())) == 2


def assert_whole_at_80_columns(table: str, words: list[str]) -> None:
    """Every line of `table` fits 80 columns, nothing is cut short (…), and each of `words` (headers,
    fold names) is whole on one line."""
    assert max(len(line) for line in table.splitlines()) <= 80 and "…" not in table
    cells = {cell.strip() for line in table.splitlines() for cell in re.split("[┃│]", line)}
    assert all(word in cells for word in words), (words, table)


def test_fit_problems_are_one_line(runner, tmp_path):
    result = runner.invoke(main, ["fit", str(tmp_path / "nope.json"), "--output", str(tmp_path / "w.json")])
    assert result.exit_code == 2 and "E022" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "w.json").exists()


def test_fit_refuses_an_output_it_could_not_write_before_recording(runner, tmp_path):
    data = tmp_path / "mine.json"
    data.write_text(json.dumps(TWO_ARTICLES), encoding="utf-8")
    result = runner.invoke(main, ["fit", str(data), "--output", str(tmp_path / "missing" / "w.json")])
    assert result.exit_code == 2 and "E023" in result.stderr and "Traceback" not in result.stderr
    # Refused before the (default) model is loaded: nothing recorded, nothing lost.
    assert "Loading model" not in result.stderr


def test_ask_top_k_lists_the_best_distinct_spans(runner, override_args):
    text = "The Eiffel Tower is in Paris. It opened in 1889. Gustave Eiffel's company built it."
    result = runner.invoke(main, ["ask", QA_CFG, "Where is the tower?", "--text", text, "--top-k", "3",
                                  "--components.llama_qa.selector.answerability", "false", *override_args])
    assert result.exit_code == 0, result.output
    assert "best distinct spans" in result.stdout
    as_json = runner.invoke(main, ["ask", QA_CFG, "Where is the tower?", "--text", text, "--top-k", "3", "--json",
                                   *override_args])
    assert 1 < len(json.loads(as_json.stdout)["alternatives"]) <= 3


def test_top_k_in_generative_mode_is_one_line(runner, override_args):
    result = runner.invoke(main, ["ask", QA_CFG, "Where?", "--text", "Paris.", "--top-k", "2", *override_args,
                                  "--components.llama_qa.mode", "generative"])
    assert result.exit_code == 2 and "E085" in result.stderr and "Traceback" not in result.stderr


def test_run_to_a_docbin_keeps_records_beside_it_and_resumes(runner, docs, questions, tmp_path,
                                                              fake_paris):
    from spacy.tokens import DocBin

    output = tmp_path / "answers.spacy"
    args = ["run", QA_CFG, "--input", str(docs), "--output", str(output), "--questions", str(questions),
            *fake_paris]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in lines((tmp_path / "answers.spacy.jsonl").read_text(encoding="utf-8"))]
    assert all("tokens" in r for r in records)  # the Docs are built from the annotations
    found = list(DocBin().from_disk(output).get_docs(spacy.blank("en").vocab))
    assert [d._.doc_id for d in found] == ["bowl.md", "tower.txt"]
    assert all(len(d._.answers) == 2 and d[0].pos_ for d in found)
    assert [s.text for s in found[1].spans["answers"]] == [a["text"] for a in records[1]["answers"] if a["grounded"]]

    (docs / "more.txt").write_text("The Louvre is in Paris.", encoding="utf-8")
    output.unlink()  # rebuilt from the records, which resume reads
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"resumed \(already done\) +│ +2 │", result.stderr)
    assert len(DocBin().from_disk(output)) == 3 and not (tmp_path / ".answers.spacy.nlpipe-tmp").exists()


def test_run_refuses_outputs_it_cannot_write(runner, docs, tmp_path):
    theirs = tmp_path / "theirs.spacy"
    theirs.write_bytes(b"someone's DocBin")
    result = runner.invoke(main, ["run", ANNOTATE_CFG, "--input", str(docs), "--output", str(theirs)])
    assert result.exit_code == 2 and "E093" in result.stderr and theirs.read_bytes() == b"someone's DocBin"
    result = runner.invoke(main, ["run", ANNOTATE_CFG, "--input", str(docs), "--output", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "E094" in result.stderr and "nlpipe report" in result.stderr
    result = runner.invoke(main, ["run", ANNOTATE_CFG, "--input", str(docs), "--output", str(theirs), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert len(list(spacy.tokens.DocBin().from_disk(theirs).get_docs(spacy.blank("en").vocab))) == 2


def test_report_from_a_docbin_and_from_annotated_jsonl(runner, docs, tmp_path):
    for output in ("notes.spacy", "notes.jsonl"):
        runner.invoke(main, ["run", ANNOTATE_CFG, "--input", str(docs), "--output", str(tmp_path / output),
                             "--annotations"], catch_exceptions=False)
        report = tmp_path / f"{output}.html"
        result = runner.invoke(main, ["report", str(tmp_path / output), "--output", str(report)])
        assert result.exit_code == 0, result.output
        assert "2 documents" in result.stderr
        page = report.read_text(encoding="utf-8")
        assert 'id="doc-1" open' in page and "tower.txt" in page and 'data-label="GPE"' in page


def test_report_runs_a_config_first(runner, docs, questions, tmp_path, fake_paris):
    report = tmp_path / "report.html"
    result = runner.invoke(main, ["report", QA_CFG, "--input", str(docs), "--questions", str(questions),
                                  "--output", str(report), "--expanded", "1", *fake_paris])
    assert result.exit_code == 0, result.output
    assert "2 documents, 4 questions (4 answers grounded, 0 no answer)" in result.stderr
    page = report.read_text(encoding="utf-8")
    assert page.count('class="body"') == 1 and '<details class="doc" id="doc-1"><summary>' in page
    assert 'data-label="Q2"' in page


@pytest.mark.parametrize("source, output, code", [
    ("answers.txt", "report.html", "E092"),
    ("missing.spacy", "report.html", "E090"),
    ("missing.spacy", "report.pdf", "E095"),
    ("qa", "report.html", "E006"),  # a config needs --input
])
def test_report_problems_are_one_line(runner, tmp_path, source, output, code):
    result = runner.invoke(main, ["report", str(tmp_path / source) if "." in source else source,
                                  "--output", str(tmp_path / output)])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: {code}:"), result.output
    assert "Traceback" not in result.output and not (tmp_path / output).exists()


def test_report_of_a_file_takes_no_run_options(runner, tmp_path):
    result = runner.invoke(main, ["report", str(tmp_path / "a.spacy"), "--output", str(tmp_path / "r.html"),
                                  "--input", "docs"])
    assert result.exit_code == 2 and "go with a config" in result.stderr


def test_train_prints_cross_validation_and_writes_a_reader_the_pipeline_uses(runner, override_args, qa_overrides,
                                                                             tmp_path, monkeypatch):
    from tests.squad_data import write_squad

    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    data = write_squad(tmp_path / "mine.json")
    model = qa_overrides["components.llama_qa.model.path"]
    tables_at(80, monkeypatch)
    result = runner.invoke(main, ["train", str(data), "--output", str(tmp_path / "reader"), "--model", model,
                                  "--device", "cpu", "--epochs", "1", "--folds", "2"])
    assert result.exit_code == 0, result.output
    assert "Held out" in result.stdout
    assert_whole_at_80_columns(result.stdout, ["fold", "EM", "F1", "threshold", "HasAns", "NoAns", "SQuAD", "2.0 F1",
                                               "balanced"])
    assert "--components.llama_qa.reader.path" in result.stderr
    provenance = json.loads((tmp_path / "reader" / "reader.json").read_text())["provenance"]
    assert provenance["model"] == model and provenance["settings"]["epochs"] == 1
    assert_reader_answers(runner, override_args, tmp_path / "reader")
    # The training ends with the verifier: one in the reader's folder, one per article fold
    # (folds/verifier-K, fitted without that fold's articles), and its held-out AUC printed.
    assert "Verifier, held out" in result.stdout
    verifier = json.loads((tmp_path / "reader" / "verifier.json").read_text())
    folds = sorted((tmp_path / "reader" / "folds").glob("verifier-*"))
    held = [set(json.loads((fold / "verifier.json").read_text())["provenance"]["held"]) for fold in folds]
    assert len(folds) == 2 and not held[0] & held[1]
    assert not list((tmp_path / "reader" / "folds").glob("fold-*/verifier.json"))
    assert len(verifier["provenance"]["cross_validation"]["folds"]) == 2
    assert verifier["provenance"]["questions"] == 13 and verifier["provenance"]["unanswerable"] == 3
    # --verifier-only refits it alone, from the cached states, to the same numbers.
    (tmp_path / "reader" / "verifier.json").unlink()
    again = runner.invoke(main, ["train", str(data), "--output", str(tmp_path / "reader"), "--model", model,
                                 "--device", "cpu", "--folds", "2", "--verifier-only"])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "reader" / "verifier.json").read_text()) == verifier
    # Other folds replace the earlier ones, none left behind.
    assert runner.invoke(main, ["train", str(data), "--output", str(tmp_path / "reader"), "--model", model,
                                "--device", "cpu", "--folds", "3", "--verifier-only"]).exit_code == 0
    assert len(list((tmp_path / "reader" / "folds").glob("verifier-*"))) == 3
    assert "Held out (trained" not in again.stdout
    nothing = runner.invoke(main, ["train", str(data), "--output", str(tmp_path / "empty"), "--model", model,
                                   "--verifier-only"])
    assert nothing.exit_code != 0 and nothing.stderr.startswith("error: E104") and "Traceback" not in nothing.stderr


def assert_reader_answers(runner, override_args, reader: Path) -> None:
    """`nlpipe ask` in reader mode with `reader` gives a record, an answer or "no answer"."""
    asked = runner.invoke(main, ["ask", QA_CFG, "How long is the Danube?", "--text",
                                 "The Danube is about 2,850 kilometres long.", "--json", *override_args,
                                 "--components.llama_qa.mode", "reader", "--components.llama_qa.reader.path",
                                 str(reader)])
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.stdout)["answerable"] in (True, False)


def test_train_with_tuned_layers_writes_a_reader_the_pipeline_reads_and_refuses_too_many(
        runner, override_args, qa_overrides, tmp_path, monkeypatch):
    from tests.squad_data import write_squad

    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    data = write_squad(tmp_path / "mine.json")
    args = ["train", str(data), "--model", qa_overrides["components.llama_qa.model.path"], "--device", "cpu",
            "--epochs", "1", "--folds", "2"]
    result = runner.invoke(main, [*args, "--output", str(tmp_path / "reader"), "--tune-layers", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "reader" / "reader.json").read_text())["config"]["tuned_layers"] == 1
    assert_reader_answers(runner, override_args, tmp_path / "reader")
    too_many = runner.invoke(main, [*args, "--output", str(tmp_path / "other"), "--tune-layers", "3"])
    assert too_many.exit_code != 0 and "E103" in too_many.stderr and "Traceback" not in too_many.stderr
    assert len(too_many.stderr.strip().splitlines()) == 1


def test_train_interrupted_says_how_to_resume_and_resumes(runner, qa_overrides, tmp_path, monkeypatch):
    from nlpipe.training import train as training
    from tests.squad_data import write_squad

    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    data = write_squad(tmp_path / "mine.json")
    args = ["train", str(data), "--output", str(tmp_path / "reader"), "--model",
            qa_overrides["components.llama_qa.model.path"], "--device", "cpu", "--epochs", "1", "--folds", "2"]
    calls, real_loss = [], training.batch_loss

    def interrupt_in_the_second_fold(*args):
        calls.append(1)
        if len(calls) == 3:  # fold 1 trains on 2 mini-batches here: this is fold 2's first
            raise KeyboardInterrupt
        return real_loss(*args)
    monkeypatch.setattr(training, "batch_loss", interrupt_in_the_second_fold)
    result = runner.invoke(main, args)
    assert result.exit_code == 130 and "run the same command again to resume" in result.stderr
    assert not (tmp_path / "reader").exists()
    finished = list((tmp_path / "cache" / "training").glob("*/fold-1/predictions.json"))
    assert len(finished) == 1
    resumed = runner.invoke(main, args)
    assert resumed.exit_code == 0, resumed.output
    assert (tmp_path / "reader" / "reader.pt").is_file()


def test_train_problems_are_one_line(runner, tmp_path):
    result = runner.invoke(main, ["train", str(tmp_path / "nope.json"), "--output", str(tmp_path / "r")])
    assert result.exit_code == 2 and "E022" in result.stderr and "Traceback" not in result.stderr


def test_the_run_summary_counts_no_answer_apart_from_answers(runner, override_args, docs, questions, tmp_path):
    """An abstention is not an answer: the summary says how many questions got "no answer"."""
    result = runner.invoke(main, ["run", QA_CFG, "--input", str(docs), "--output", str(tmp_path / "a.jsonl"),
                                  "--questions", str(questions), *override_args,
                                  "--components.llama_qa.selector.answerability", "true",
                                  "--components.llama_qa.selector.no_answer_threshold", "1.0"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in lines((tmp_path / "a.jsonl").read_text(encoding="utf-8"))]
    abstained = sum(a["answerable"] is False for r in records for a in r["answers"])
    assert abstained == 4
    assert "questions asked" in result.stderr and "questions answered" not in result.stderr
    assert f"no answer (the text does not say) {abstained}" in " ".join(result.stderr.replace("│", " ").split())


@pytest.mark.parametrize("how", [["--top-k", "1" + "0" * 30], ["--top-k", "1e30"],
                                 ["--components.llama_qa.top_k", "1e30"],
                                 ["--components.llama_qa.top_k", "1" + "0" * 30]])
def test_a_huge_top_k_is_one_line(runner, override_args, how):
    result = runner.invoke(main, ["ask", QA_CFG, "Where?", "--text", "Paris.", *override_args, *how])
    assert result.exit_code == 2, result.output
    assert "top" in result.stderr and "Traceback" not in result.stderr
    assert not isinstance(result.exception, OverflowError)


def test_the_command_line_starts_without_spacy_or_torch():
    """`nlpipe --help`, a usage error or `validate`'s first line must not wait seconds for
    spaCy and torch: the commands import them when they run."""
    import subprocess
    import sys

    code = "import sys, nlpipe.cli; print(sorted({'spacy', 'torch', 'numpy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
