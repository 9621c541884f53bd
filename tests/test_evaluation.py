"""SQuAD evaluation and `nlpipe eval squad`; reading and making SQuAD data (nlpipe.squad)."""

import json

import pytest
from click.testing import CliRunner

from nlpipe.cli import main
from nlpipe.evaluation import EvalResult, calibration, evaluate_squad, no_answer_check
from nlpipe.metrics import normalize_answer
from nlpipe.squad import read_squad, unanswerable_questions, write_squad

from .conftest import SHARED_DATA, fake_pipeline

SQUAD_DEV = SHARED_DATA / "squad-dev-v1.1-part.json"
TINY_SQUAD = {"version": "1.1", "data": [{"title": "t", "paragraphs": [
    {"context": "The Eiffel Tower is in Paris. It opened in 1889.",
     "qas": [{"id": "q1", "question": "Where is the tower?", "answers": [{"text": "Paris", "answer_start": 23}]},
             {"id": "q2", "question": "When did it open?", "answers": [{"text": "in 1889", "answer_start": 40},
                                                                       {"text": "1889", "answer_start": 43}]}]},
    {"context": "Super Bowl 50 was played at Levi's Stadium.",
     "qas": [{"id": "q3", "question": "Where was it played?",
              "answers": [{"text": "Levi's Stadium", "answer_start": 28}]}]}]}]}


@pytest.fixture()
def squad_file(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(TINY_SQUAD), encoding="utf-8")
    return path


def test_calibration_bins_and_error():
    predictions = ([{"confidence": 0.9, "exact_match": 1.0}] * 9 + [{"confidence": 0.9, "exact_match": 0.0}]
                   + [{"confidence": 0.3, "exact_match": 1.0}] * 3 + [{"confidence": 0.3, "exact_match": 0.0}] * 7
                   + [{"confidence": None, "exact_match": 0.0}, {"confidence": 1.0, "exact_match": 1.0}])
    bins, error = calibration(predictions, n_bins=5)
    assert [(b.low, b.count) for b in bins] == [(0.2, 10), (0.8, 11)]  # the None is left out, 1.0 in the top bin
    assert bins[0].predicted == pytest.approx(0.3) and bins[0].observed == pytest.approx(0.3)
    assert bins[1].observed == pytest.approx(10 / 11)
    assert error == pytest.approx(11 * abs(bins[1].predicted - 10 / 11) / 21)
    overconfident = [{"confidence": 0.9, "exact_match": 0.0}] * 4
    assert calibration(overconfident)[1] == pytest.approx(0.9)
    assert calibration([]) == ([], 0.0)


def test_no_answer_is_checked_against_the_unanswerable_questions():
    def question(no_answer, answerable):
        return {"no_answer": no_answer, "references": ["x"] if answerable else []}
    predictions = ([question(0.1, True)] * 8 + [question(0.1, False)] * 2 + [question(0.7, False)] * 3
                   + [question(0.7, True)] + [question(None, False)])  # the last was never weighed
    check = no_answer_check(predictions)
    assert [(b.low, b.count, b.observed) for b in check.bins] == [(0.0, 10, pytest.approx(0.2)),
                                                                  (pytest.approx(0.6), 4, pytest.approx(0.75))]
    assert check.error == pytest.approx((10 * 0.1 + 4 * 0.05) / 14)
    # Unanswerable above answerable: 3 of 5 at 0.7 beat 8 of 9 answerable, ties count half.
    assert check.auc == pytest.approx((2 * (0.5 * 8) + 3 * (8 + 0.5 * 1)) / (5 * 9))
    # Nothing to check on answerable questions alone, or where nothing was weighed.
    assert no_answer_check([question(0.2, True)] * 3) is None
    assert no_answer_check([question(None, True), question(None, False)]) is None


def test_read_squad_honours_the_limit(squad_file):
    paragraphs = list(read_squad(squad_file, limit=2))
    assert [[qid for qid, _, _ in p.questions] for p in paragraphs] == [["q1", "q2"]]
    assert sum(len(p.questions) for p in read_squad(squad_file)) == 3


def test_evaluate_scores_against_every_reference(squad_file):
    replies = {"Where is the tower?": "Paris", "When did it open?": "1889", "Where was it played?": "Denver"}
    qa_nlp = fake_pipeline(replies=replies, reply_logprob=-0.1)
    qa_nlp.get_pipe("llama_qa").mode = "generative"  # the replies are the predictions
    result = evaluate_squad(qa_nlp, squad_file)
    assert result.questions == 3
    assert result.exact_match == pytest.approx(200 / 3)
    assert [p["exact_match"] for p in result.predictions] == [1.0, 1.0, 0.0]
    assert result.spans == 2  # "Denver" is not in its paragraph
    assert [(p["question_type"], p["paragraph"]) for p in result.predictions] == [("where", 0), ("when", 0),
                                                                                  ("where", 1)]


def test_eval_squad_command(qa_overrides, squad_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the built-in qa pipeline is the default from any folder
    args = [a for key, value in qa_overrides.items() for a in (f"--{key}", (value if isinstance(value, str) else json.dumps(value)))]
    output = tmp_path / "predictions.jsonl"
    result = CliRunner().invoke(main, ["eval", "squad", str(squad_file), "--output", str(output), *args])
    assert result.exit_code == 0, result.output
    assert "exact match" in result.stdout
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == ["q1", "q2", "q3"]


def test_eval_squad_report(qa_overrides, squad_file, tmp_path):
    args = [a for key, value in qa_overrides.items() for a in (f"--{key}", (value if isinstance(value, str) else json.dumps(value)))]
    report = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["eval", "squad", str(squad_file), "--report", str(report), *args])
    assert result.exit_code == 0, result.output
    page = report.read_text(encoding="utf-8")
    assert '<section id="evaluation">' in page and "<td>where</td><td>2</td>" in page
    assert page.count("<tr><td>") >= 3 + 2  # the worst answers (all three) and the two question types
    assert '<span class="doc-id">t #1</span>' in page and '<span class="doc-id">t #2</span>' in page


def test_eval_squad_report_must_be_html_before_anything_runs(squad_file, tmp_path):
    result = CliRunner().invoke(main, ["eval", "squad", str(squad_file), "--report", str(tmp_path / "r.txt")])
    assert result.exit_code == 2 and "E095" in result.stderr


@pytest.mark.skipif(not SQUAD_DEV.is_file(), reason="../shared/data is not beside this checkout")
def test_eval_reads_the_shared_squad_part(qa_overrides):
    paragraphs = list(read_squad(SQUAD_DEV, limit=12))
    assert sum(len(p.questions) for p in paragraphs) == 12
    assert all(refs for p in paragraphs for _, _, refs in p.questions)


def test_missing_squad_file_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["eval", "squad", str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "E022" in result.stderr and "Traceback" not in result.stderr


TINY_SQUAD_V2 = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [
    {"context": "The Eiffel Tower is in Paris. It opened in 1889.",
     "qas": [{"id": "a1", "question": "Where is the tower?", "is_impossible": False,
              "answers": [{"text": "Paris", "answer_start": 23}]},
             {"id": "n1", "question": "When did the tower close?", "is_impossible": True, "answers": [],
              "plausible_answers": [{"text": "1889", "answer_start": 43}]}]}]}]}


def test_squad_2_files_read_impossible_questions_as_having_no_references(tmp_path):
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(TINY_SQUAD_V2), encoding="utf-8")
    [paragraph] = read_squad(path)
    assert paragraph.title == "t"
    assert paragraph.questions == [("a1", "Where is the tower?", ["Paris"]), ("n1", "When did the tower close?", [])]


def test_results_split_into_has_answer_and_no_answer_as_the_official_v2_script():
    predictions = [{"references": ["Paris"], "exact_match": 1.0, "f1": 1.0, "start_char": 1},
                   {"references": ["1889"], "exact_match": 0.0, "f1": 0.5, "start_char": 1},
                   {"references": [], "exact_match": 1.0, "f1": 1.0, "start_char": None}]
    result = EvalResult.of(predictions)
    assert (result.questions, result.f1) == (3, pytest.approx(250 / 3))
    assert (result.has_answer.questions, result.has_answer.f1) == (2, 75.0)
    assert (result.no_answer.questions, result.no_answer.exact_match) == (1, 100.0)


def test_unanswerable_questions_made_from_the_data_never_hold_an_answer(tmp_path):
    paragraphs = list(read_squad(SQUAD_DEV if SQUAD_DEV.is_file() else _write(tmp_path, TINY_SQUAD)))
    made = unanswerable_questions(paragraphs)
    answerable = {qid: (q, refs) for p in paragraphs for qid, q, refs in p.questions}
    assert len(made) <= len(answerable) and made
    for paragraph in made:
        [(qid, question, references)] = paragraph.questions
        source, kind = qid.rsplit("-noans-", 1)
        assert references == [] and answerable[source][0] == question and kind in ("cut", "other")
        text = f" {normalize_answer(paragraph.context)} "
        assert not any(f" {normalize_answer(r)} " in text for r in answerable[source][1])
    written = _write_squad(made, tmp_path / "made.json")
    assert [q for p in read_squad(written) for q in p.questions] == [q for p in made for q in p.questions]


def _write(tmp_path, data):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _write_squad(paragraphs, path):
    write_squad(paragraphs, path)
    assert json.loads(path.read_text())["version"] == "v2.0"
    return path


def test_eval_squad_command_reports_has_and_no_answer_on_a_v2_file(qa_overrides, tmp_path):
    args = [a for key, value in qa_overrides.items() for a in (f"--{key}", (value if isinstance(value, str) else json.dumps(value)))]
    output = tmp_path / "predictions.jsonl"
    result = CliRunner().invoke(main, ["eval", "squad", str(_write(tmp_path, TINY_SQUAD_V2)), "--output", str(output),
                                       *args, "--components.llama_qa.selector.answerability", "true"])
    assert result.exit_code == 0, result.output
    assert "HasAns" in result.stdout and "NoAns" in result.stdout
    # Every question's chance of having no answer, and how well it tells them apart.
    chances = [json.loads(line)["no_answer"] for line in output.read_text().splitlines()]
    assert len(chances) == 2 and all(0 <= p <= 1 for p in chances)
    assert "The chance of no answer" in result.stdout and "AUC" in result.stdout


def test_progress_moves_as_each_question_is_answered(qa_nlp, squad_file):
    done = []
    evaluate_squad(qa_nlp, squad_file, batch_size=8, on_question=done.append)
    # Counted question by question as they are answered, not a paragraph's worth at a time.
    assert done[0] == 1 and list(dict.fromkeys(done)) == [1, 2, 3] and done == sorted(done)
    assert qa_nlp.get_pipe("llama_qa").on_answered is None  # the component is left as it was
