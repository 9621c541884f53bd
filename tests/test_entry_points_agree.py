"""The same text, questions and config give the same answers through every way in: `nlpipe run`,
`nlpipe ask`, `nlpipe eval squad`, `nlp.pipe` (batch sizes 1 and 16) and `nlp(doc)`."""

import json

import pytest
from click.testing import CliRunner

from nlpipe.cli import main, parse_overrides
from nlpipe.config import build_pipeline, load_config
from nlpipe.evaluation import evaluate_squad

from .conftest import REPO

QA_CFG = str(REPO / "pipelines" / "qa.cfg")
TEXT = (REPO / "examples" / "docs" / "eiffel_tower.txt").read_text(encoding="utf-8")
QUESTIONS = ["How tall is it?", "Who designed it?", "Where is it located?"]
KEYS = ("text", "start_char", "end_char", "confidence")


def answers_of(records) -> list[tuple]:
    return [tuple(a[k] for k in KEYS) for a in records]


@pytest.fixture(scope="module")
def overrides(tiny_llama_dir) -> list[str]:
    return ["--components.llama_qa.model.path", str(tiny_llama_dir), "--components.llama_qa.model.device", "cpu",
            "--components.llama_qa.model.max_new_tokens", "8", "--components.llama_qa.mode", "grounded"]


@pytest.fixture(scope="module")
def nlp(overrides):
    return build_pipeline(load_config(QA_CFG, parse_overrides(overrides)))


def through_python(nlp, questions, batch_size=None) -> list[tuple]:
    doc = nlp.make_doc(TEXT)
    doc._.questions = list(questions)
    doc = next(nlp.pipe([doc], batch_size=batch_size)) if batch_size else nlp(doc)
    return answers_of(doc._.answers)


def test_a_set_of_questions_gets_the_same_answers_everywhere(nlp, overrides, tmp_path):
    reference = through_python(nlp, QUESTIONS)
    assert len(reference) == len(QUESTIONS)
    for batch_size in (1, 16):
        assert through_python(nlp, QUESTIONS, batch_size) == reference
    # Among other documents in one nlp.pipe batch
    docs = [nlp.make_doc(t) for t in ("Rome is in Italy.", TEXT, "Paris is in France.")]
    for doc in docs:
        doc._.questions = QUESTIONS
    assert answers_of(list(nlp.pipe(docs, batch_size=16))[1]._.answers) == reference

    source, questions, output = tmp_path / "docs.jsonl", tmp_path / "q.txt", tmp_path / "out.jsonl"
    source.write_text(json.dumps({"id": "eiffel", "text": TEXT}) + "\n", encoding="utf-8")
    questions.write_text("\n".join(QUESTIONS) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["run", QA_CFG, "--input", str(source), "--questions", str(questions),
                                       "--output", str(output), *overrides], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in output.read_text().splitlines()]
    assert answers_of(record["answers"]) == reference

    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"title": "Eiffel", "paragraphs": [{"context": TEXT, "qas": [
        {"id": str(i), "question": q, "answers": [{"text": "x", "answer_start": 0}]}
        for i, q in enumerate(QUESTIONS)]}]}]}), encoding="utf-8")
    predictions = evaluate_squad(nlp, squad).predictions
    assert [(p["prediction"], p["start_char"], p["confidence"]) for p in predictions] == [
        (text, start, confidence) for text, start, _, confidence in reference]


def test_one_question_gets_the_same_answer_from_ask_and_python(nlp, overrides):
    question = QUESTIONS[0]
    result = CliRunner().invoke(main, ["ask", QA_CFG, "--text", TEXT, question, "--json", *overrides],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert answers_of([json.loads(result.stdout)]) == through_python(nlp, [question])
