"""nlpipe.jobs: the job API every front end goes through, called as a Python user would."""

import dataclasses
import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from nlpipe import jobs
from nlpipe.cli import main
from nlpipe.errors import ConfigError, InputError, NlpipeError
from nlpipe.runner import LocalEngine

REPO = Path(__file__).resolve().parents[1]
QA_CFG = str(REPO / "pipelines" / "qa.cfg")
ANNOTATE_CFG = str(REPO / "pipelines" / "annotate.cfg")


@pytest.fixture()
def docs(tmp_path):
    path = tmp_path / "docs.jsonl"
    lines = [{"id": "tower", "text": "The Eiffel Tower is in Paris. It opened in 1889.", "questions": ["Where is it?"]},
             {"id": "bowl", "text": "Super Bowl 50 was played in Santa Clara.", "questions": ["Where was it played?"]}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


class Recorded(jobs.JobEvents):
    """Every event, in order."""

    def __init__(self):
        self.seen = []

    @contextmanager
    def step(self, description):
        self.seen.append(("step", description))
        yield

    @contextmanager
    def loading_model(self, component, location):
        self.seen.append(("loading", component))
        yield lambda step, done, total: None

    def progress(self, stage, done, total):
        self.seen.append(("progress", stage, done, total))

    def note(self, message):
        self.seen.append(("note", message))

    def started(self):
        self.seen.append(("started",))

    def record(self, record, summary):
        self.seen.append(("record", record["id"], summary.documents))


def test_a_job_from_python_writes_what_nlpipe_run_writes(qa_overrides, docs, tmp_path):
    from_python, from_cli = tmp_path / "python.jsonl", tmp_path / "cli.jsonl"
    events = Recorded()
    summary = jobs.run_job(jobs.load_job(QA_CFG, qa_overrides).replace(input=str(docs), output=str(from_python)),
                           events=events)
    args = [arg for key, value in qa_overrides.items() for arg in (f"--{key}", json.dumps(value))]
    result = CliRunner().invoke(main, ["run", QA_CFG, "--input", str(docs), "--output", str(from_cli), *args],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert from_python.read_bytes() == from_cli.read_bytes()
    assert (summary.documents, summary.questions) == (2, 2)
    # The pipeline is built, then its model loaded, then the run starts; a record event per document.
    assert events.seen == [("step", "Building the spaCy pipeline"), ("loading", "llama_qa"), ("started",),
                           ("record", "tower", 1), ("record", "bowl", 2)]


def test_settings_are_frozen_and_a_changed_copy_is_checked(qa_overrides):
    job = jobs.load_job(QA_CFG, qa_overrides)
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.settings.batch_size = 4
    assert job.replace(batch_size=4).settings.batch_size == 4 and job.settings.batch_size == 32
    with pytest.raises(ConfigError, match="E002.*batch_size"):
        job.replace(batch_size=0)
    with pytest.raises(ConfigError, match="E003.*'inputs'"):
        job.replace(inputs="docs")


def test_a_spacy_output_writes_annotations_without_changing_the_settings(qa_overrides):
    job = jobs.load_job(QA_CFG, qa_overrides, output="answers.spacy")
    assert job.settings.annotations is False and job.settings.writes_annotations
    assert not job.replace(output="answers.jsonl").settings.writes_annotations


def test_top_k_is_set_on_every_question_answering_component_whatever_its_name(qa_overrides, tmp_path):
    renamed = tmp_path / "renamed.cfg"
    renamed.write_text(Path(QA_CFG).read_text(encoding="utf-8").replace("llama_qa]", "answerer]").replace(
        '"llama_qa"]', '"answerer"]').replace("components.llama_qa.", "components.answerer."), encoding="utf-8")
    overrides = {key.replace("llama_qa", "answerer"): value for key, value in qa_overrides.items()}
    job = jobs.load_job(str(renamed), overrides, top_k=3)
    assert job.config["components"]["answerer"]["top_k"] == 3
    with pytest.raises(ConfigError, match="E085.*no llama_qa component"):
        jobs.load_job(ANNOTATE_CFG, top_k=3)


def test_run_job_uses_the_engine_it_is_given(qa_overrides, docs, tmp_path):
    class Counting(LocalEngine):
        started = handed = 0

        def start(self):
            Counting.started += 1
            super().start()

        def records(self, pending):
            for item in pending:
                Counting.handed += 1
                yield from super().records([item])

    job = jobs.load_job(QA_CFG, qa_overrides, input=str(docs), output=str(tmp_path / "out.jsonl"))
    nlp = jobs.build(job)
    summary = jobs.run_job(job, engine=Counting(nlp, job.settings))
    assert (Counting.started, Counting.handed, summary.documents) == (1, 2, 2)


def test_checks_come_before_the_pipeline_is_built(qa_overrides, tmp_path):
    events = Recorded()
    with pytest.raises(InputError, match="E008"):
        jobs.run_job(jobs.load_job(QA_CFG, qa_overrides, input=str(tmp_path / "none"), output="-"), events=events)
    assert events.seen == []


def test_ask_answers_in_the_order_asked_and_needs_a_question_answering_component(qa_overrides):
    job = jobs.load_job(QA_CFG, qa_overrides)
    answers = jobs.ask(job, "The Eiffel Tower is in Paris. It opened in 1889.", ["When did it open?", "Where is it?"])
    assert [a["question"] for a in answers] == ["When did it open?", "Where is it?"]
    with pytest.raises(NlpipeError, match="E101.*no llama_qa component"):
        jobs.ask(jobs.load_job(ANNOTATE_CFG), "Paris.", ["Where?"])


def test_evaluate_writes_predictions_and_reports_progress_in_questions(qa_overrides, tmp_path):
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"title": "Tower", "paragraphs": [{
        "context": "The Eiffel Tower is in Paris. It opened in 1889.",
        "qas": [{"id": "q1", "question": "Where is it?", "answers": [{"text": "Paris", "answer_start": 23}]},
                {"id": "q2", "question": "When did it open?", "answers": [{"text": "1889", "answer_start": 43}]}]}]}]}),
        encoding="utf-8")
    events, output = Recorded(), tmp_path / "predictions.jsonl"
    result = jobs.evaluate(jobs.load_job(QA_CFG, qa_overrides), squad, output=output, events=events)
    written = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert result.questions == 2 and [p["id"] for p in written] == ["q1", "q2"]
    progress = [event for event in events.seen if event[0] == "progress"]
    assert progress[0] == ("progress", "evaluate", 0, 2) and progress[-1] == ("progress", "evaluate", 2, 2)


def test_fit_needs_a_question_answering_component(tmp_path, monkeypatch):
    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "q", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]}]}]}]}),
        encoding="utf-8")
    with pytest.raises(NlpipeError, match="E101.*nlpipe fit has no span selector"):
        jobs.fit_selector([squad], tmp_path / "w.json", jobs.load_job(ANNOTATE_CFG), make_unanswerable=False)


def test_fit_reads_each_article_with_a_reader_head_that_never_saw_it(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from nlpipe.components.reading import Reader
    from nlpipe.squad import SquadParagraph
    reader_dir = tmp_path / "reader"
    for number, held in ((1, ["Rhine"]), (2, ["Warsaw"])):
        fold = reader_dir / "folds" / f"fold-{number}"
        fold.mkdir(parents=True)
        (fold / "reader.json").write_text(json.dumps({"provenance": {"held": held}}), encoding="utf-8")
    paragraphs = [SquadParagraph(f"text {k}", [(f"q{k}", "What?", ["x"])], title)
                  for k, title in enumerate(["Rhine", "Warsaw", "Rhine", "Nile"])]
    seen, progress = [], []

    def fake_record(nlp, group, on_questions, read):
        verifier = qa.reader._verifier_folder
        seen.append((Path(qa.reader.path).name, [p.title for p in group]) if verifier is None else
                    (Path(qa.reader.path).name, Path(verifier).name, [p.title for p in group]))
        on_questions(len(group))
        return [p.questions[0][0] for p in group]
    monkeypatch.setattr(jobs, "record", fake_record)
    qa = SimpleNamespace(reader=Reader(str(reader_dir)))
    from nlpipe.llm.reader import held_out_readers
    recorded = jobs.record_held_out(None, qa, paragraphs, held_out_readers(reader_dir), [], progress.append, True)
    # Each article by the head that held it out; an article no fold held (not training data) by the reader.
    assert seen == [("fold-1", ["Rhine", "Rhine"]), ("fold-2", ["Warsaw"]), ("reader", ["Nile"])]
    assert sorted(recorded) == ["q0", "q1", "q2", "q3"] and progress == [2, 3, 4]
    assert qa.reader.path == str(reader_dir)  # the configured reader again afterwards
    # With the verifier's own folds (llm.verifier.held_out_verifiers), each article is also read
    # with the verifier that never saw it: a group per head and verifier; the reader's own
    # verifier for an article no verifier fold held.
    from nlpipe.llm.verifier import held_out_verifiers
    for number, held in ((1, ["Rhine", "Warsaw"]), (2, ["Danube"])):
        fold = reader_dir / "folds" / f"verifier-{number}"
        fold.mkdir(parents=True)
        (fold / "verifier.json").write_text(json.dumps({"provenance": {"held": held}}), encoding="utf-8")
    seen.clear()
    verifiers = held_out_verifiers(reader_dir)
    assert [(folder.name, held) for folder, held in verifiers] == [("verifier-1", {"Rhine", "Warsaw"}),
                                                                  ("verifier-2", {"Danube"})]
    jobs.record_held_out(None, qa, paragraphs, held_out_readers(reader_dir), verifiers, progress.append, True)
    assert seen == [("fold-1", "verifier-1", ["Rhine", "Rhine"]), ("fold-2", "verifier-1", ["Warsaw"]),
                    ("reader", "reader", ["Nile"])]
    assert qa.reader.path == str(reader_dir) and qa.reader._verifier_folder is None
    seen.clear()
    jobs.record_held_out(None, qa, paragraphs, [], [], progress.append, False)  # without reader features: one pass
    assert seen == [("reader", ["Rhine", "Warsaw", "Rhine", "Nile"])]


def test_fit_knows_a_reader_trained_on_its_data_from_the_readers_provenance(tmp_path):
    """A reader without cross-validation heads, fitted on its own training data, reads it in-sample:
    fit says so (W002) — only then, not for data the reader never saw."""
    from nlpipe.training.examples import files_digest
    squad, other = tmp_path / "pool.json", tmp_path / "mine.json"
    squad.write_text('{"data": []}', encoding="utf-8")
    other.write_text('{"data": [], "version": "mine"}', encoding="utf-8")
    reader = tmp_path / "reader"
    reader.mkdir()
    (reader / "reader.json").write_text(json.dumps({"provenance": {"data": files_digest([squad])}}), encoding="utf-8")
    assert jobs._trained_on(reader, [other, squad])
    assert not jobs._trained_on(reader, [other])
    assert not jobs._trained_on(tmp_path / "missing", [squad])


def test_the_verifiers_states_do_not_depend_on_the_selectors_weights():
    """A refit's new weights file or threshold leaves the verifier's cached states valid (the
    states never read the selector); any other setting of the pipeline does not."""
    from nlpipe.config import qa_component_names
    job = jobs.load_job("qa")
    names = qa_component_names(job.config)
    refit = jobs.load_job("qa", {f"components.{names[0]}.selector.weights_file": "span_selector.v10.json",
                                 f"components.{names[0]}.selector.no_answer_threshold": 0.5})
    other = jobs.load_job("qa", {f"components.{names[0]}.evidence.max_sentences": 2})
    assert jobs._states_config(refit.config, names) == jobs._states_config(job.config, names)
    assert jobs._states_config(other.config, names) != jobs._states_config(job.config, names)
    assert "selector" in job.config["components"][names[0]]  # the job's own config is left whole
