"""llama_qa in reader mode: a reader trained here on the tiny model answers through the
pipeline, with the same span choice as training's held-out predictions, windows on long
documents, abstention by threshold, and the reader saved with the pipeline."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import spacy

from nlpipe.config import build_pipeline, load_config
from nlpipe.llm.engine import Llama
from nlpipe.llm.reader import default_layers, load_reader
from nlpipe.training import features as feature_cache
from nlpipe.training.examples import read_examples
from nlpipe.training.job import train_reader
from nlpipe.training.train import predict
from tests.conftest import REPO, qa_overrides_for
from tests.squad_data import SMALL, write_squad


@pytest.fixture(scope="module")
def trained(tiny_llama_dir, tmp_path_factory):
    """(reader folder, SQuAD file, feature cache folder) trained on the tiny data."""
    folder = tmp_path_factory.mktemp("reader")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NLPIPE_CACHE", str(folder / "cache"))
        squad = write_squad(folder / "squad.json")
        # Trained to confidence, so that the best span is clear and float noise cannot flip it.
        train_reader([squad], folder / "reader", model=str(tiny_llama_dir), device="cpu", dtype="float32",
                     settings=replace(SMALL, epochs=40, dropout=0.0, learning_rate=1e-2), folds=2)
    return folder / "reader", squad


def reader_nlp(tiny_llama_dir, reader: Path, **reader_settings):
    overrides = {**qa_overrides_for(tiny_llama_dir), "components.llama_qa.mode": "reader",
                 "components.llama_qa.model.dtype": "float32", "components.llama_qa.reader.path": str(reader)}
    overrides.update({f"components.llama_qa.reader.{k}": v for k, v in reader_settings.items()})
    return build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", overrides))


def ask(nlp, text: str, questions: list[str]):
    doc = nlp.make_doc(text)
    doc._.questions = questions
    for name, proc in nlp.pipeline:
        doc = proc(doc)
    return doc._.answers


def test_the_pipeline_chooses_the_span_training_predicts(trained, tiny_llama_dir, tmp_path, monkeypatch):
    """One ranking rule: the reader in the pipeline and the held-out predictions of
    training pick the same span for the same question and paragraph."""
    reader, squad = trained
    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    examples = read_examples([squad])
    llm = Llama(tiny_llama_dir, device="cpu", dtype="float32")
    head, _ = load_reader(reader)
    cache = feature_cache.extract(llm, examples, default_layers(2), "same")
    predicted = predict(head, cache, examples, list(range(len(examples))))
    nlp = reader_nlp(tiny_llama_dir, reader, answerability=False)
    for example, prediction in zip(examples, predicted):
        [record] = ask(nlp, example.context, [example.question])
        # The pipeline widens the span to whole spaCy tokens.
        words = nlp.make_doc(example.context).char_span(prediction.start_char, prediction.end_char,
                                                        alignment_mode="expand")
        assert (record["start_char"], record["end_char"]) == (words.start_char, words.end_char), example.question
        # Training reads the features back as bf16; this float32 pipeline reads them unrounded.
        assert record["confidence"] == pytest.approx(prediction.span_probability, abs=0.02)


def test_abstains_at_the_threshold_and_answers_every_question_without_answerability(trained, tiny_llama_dir):
    reader, _ = trained
    text = "The Danube flows through ten countries. It is about 2,850 kilometres long."
    questions = ["How long is the Danube?", "Who painted it?"]
    never = ask(reader_nlp(tiny_llama_dir, reader, no_answer_threshold=0.0), text, questions)
    assert all(r["text"] == "" and r["start_char"] is None and r["answerable"] is False for r in never)
    assert all(0 <= r["confidence"] <= 1 and r["no_answer"] == r["confidence"] for r in never)
    always = ask(reader_nlp(tiny_llama_dir, reader, answerability=False), text, questions)
    for record, refused in zip(always, never):
        assert record["answerable"] is True and record["text"]
        assert record["no_answer"] == pytest.approx(refused["no_answer"])  # answered, yet weighed
        assert text[record["start_char"]:record["end_char"]] == record["text"]
        assert record["evidence_start_char"] <= record["start_char"] < record["evidence_end_char"]


def test_a_long_document_is_read_in_windows_of_whole_sentences(trained, tiny_llama_dir, monkeypatch):
    reader, _ = trained
    nlp = reader_nlp(tiny_llama_dir, reader, answerability=False, max_tokens=24, max_windows=2)
    qa = nlp.get_pipe("llama_qa")
    read_rows = []
    original = qa.llm.read_stream

    def spy(rows, layers):
        read_rows.extend(rows)
        return original(rows, layers)
    monkeypatch.setattr(qa.llm, "read_stream", spy)
    text = " ".join(["Filler sentence number %d says nothing at all." % i for i in range(12)]
                    + ["Marie Curie moved to Paris in 1891."])
    [record] = ask(nlp, text, ["When did Marie Curie move to Paris?"])
    assert len(read_rows) == 2  # max_windows passes, each within max_tokens
    assert all(len(context) <= 24 for _, context in read_rows)
    assert record["text"] and text[record["start_char"]:record["end_char"]] == record["text"]
    # The best-matching sentence's window is read: the answer can come from it.
    decoded = [qa.llm.tokenizer.decode(context) for _, context in read_rows]
    assert any("Curie" in d for d in decoded)


def test_top_k_gives_distinct_alternatives(trained, tiny_llama_dir):
    reader, _ = trained
    overrides = {**qa_overrides_for(tiny_llama_dir), "components.llama_qa.mode": "reader",
                 "components.llama_qa.reader.path": str(reader), "components.llama_qa.top_k": 3,
                 "components.llama_qa.reader.answerability": False}
    nlp = build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", overrides))
    [record] = ask(nlp, "The Rhine rises in the Swiss Alps and reaches the North Sea.", ["Where does the Rhine rise?"])
    alternatives = record["alternatives"]
    assert len(alternatives) == 3
    assert len({(a["start_char"], a["end_char"]) for a in alternatives}) == 3
    assert alternatives[0]["text"] == record["text"]
    assert [a["confidence"] for a in alternatives] == sorted((a["confidence"] for a in alternatives), reverse=True)


def test_a_saved_pipeline_carries_its_reader(trained, tiny_llama_dir, tmp_path):
    reader, _ = trained
    nlp = reader_nlp(tiny_llama_dir, reader, answerability=False)
    text, question = "Marie Curie was born in Warsaw in 1867.", ["Where was Marie Curie born?"]
    before = ask(nlp, text, question)
    nlp.to_disk(tmp_path / "pipeline")
    assert (tmp_path / "pipeline" / "llama_qa" / "reader" / "reader.pt").is_file()
    loaded = spacy.load(tmp_path / "pipeline")
    assert Path(loaded.get_pipe("llama_qa").reader.path) == tmp_path / "pipeline" / "llama_qa" / "reader"
    assert ask(loaded, text, question) == before


def test_a_question_longer_than_the_window_fails_alone(trained, tiny_llama_dir):
    reader, _ = trained
    nlp = reader_nlp(tiny_llama_dir, reader, answerability=False)
    text = "Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891."
    endless = "Where " + "really " * 600 + "was she born?"
    first, second, third = ask(nlp, text, ["Where was Marie Curie born?", endless, "When did she move to Paris?"])
    assert second["error"]["type"] == "context_overflow" and second["text"] == ""
    for record in (first, third):
        assert "error" not in record and record["text"]


def test_a_reader_json_over_the_cap_is_refused_before_it_is_read_whole(tmp_path, monkeypatch):
    import nlpipe.files as files

    monkeypatch.setattr(files, "MAX_SMALL_FILE_BYTES", 10)
    (tmp_path / "reader.json").write_text('{"format": "' + "x" * 100 + '"}')
    with pytest.raises(ValueError, match="over 10 bytes"):
        load_reader(tmp_path)


def test_a_reader_json_that_is_a_device_is_refused(tmp_path):
    (tmp_path / "reader.json").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="character device, not a regular file"):
        load_reader(tmp_path)


def grounded_nlp(tiny_llama_dir, reader: Path, weights_file: Path, **overrides):
    """Grounded mode with weights that read the (tiny) reader's features."""
    settings = {**qa_overrides_for(tiny_llama_dir), "components.llama_qa.reader.path": str(reader),
                "components.llama_qa.selector.weights_file": str(weights_file), **overrides}
    return build_pipeline(load_config(REPO / "pipelines" / "qa.cfg", settings))


def reader_weights(path: Path, weights: dict, answerability: dict | None = None, threshold=None) -> Path:
    path.write_text(json.dumps({"format": "nlpipe.SelectorWeights.v2", "weights": weights, "temperature": 1.0,
                                "answerability": {"weights": answerability or {}, "threshold": threshold}}))
    return path


def test_grounded_mode_reads_each_question_once_and_weighs_what_the_reader_says(trained, tiny_llama_dir, tmp_path,
                                                                                monkeypatch):
    """With weights on the reader's features, the reader reads each question once (one window
    for a short document), the span it rates best among the candidates wins, and a question
    without candidates gets the reader's own span: nothing is generated."""
    reader, _ = trained
    nlp = grounded_nlp(tiny_llama_dir, reader, reader_weights(tmp_path / "w.json", {"reader_exact": 1.0}))
    qa = nlp.get_pipe("llama_qa")
    assert qa.selector.uses_reader
    read_rows = []
    original = qa.llm.read_stream
    monkeypatch.setattr(qa.llm, "read_stream", lambda rows, layers: read_rows.extend(rows) or original(rows, layers))
    monkeypatch.setattr(qa.llm, "complete", lambda requests: pytest.fail("nothing is generated with a reader"))
    text = "Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891 and studied physics."
    questions = ["When did Marie Curie move to Paris?", "Why did she study physics?"]
    span_answer, free_form = ask(nlp, text, questions)
    assert len(read_rows) == 2
    doc = nlp(text)
    doc._.questions = questions
    asked = qa.ask([doc])
    readings = qa.readings(asked)
    candidates = qa.selector.candidates(asked[0].ranked, asked[0].question, reading=readings[0])
    best = max(candidates, key=lambda span: readings[0].features_of(span)["reader_exact"])
    assert (span_answer["start_char"], span_answer["end_char"]) == (best.start_char, best.end_char)
    assert readings[0].features_of(best)["reader_exact"] > readings[0].features_of(candidates[-1])["reader_exact"] \
        or best == candidates[-1]
    # "Why" has no candidates: the reader's best span, a span of the document.
    assert qa.selector.candidates(asked[1].ranked, asked[1].question, reading=readings[1]) == []
    assert free_form["text"] and text[free_form["start_char"]:free_form["end_char"]] == free_form["text"]
    assert (free_form["start_char"], free_form["end_char"]) == readings[1].spans[0][1]


def test_grounded_mode_abstains_on_the_readers_no_answer(trained, tiny_llama_dir, tmp_path):
    """The answerability model weighs the reader's P(no answer); a question without candidates
    abstains at the reader's threshold. Neither invents a reply."""
    reader, _ = trained
    weights = reader_weights(tmp_path / "w.json", {"reader_exact": 1.0}, {"reader_no_answer": -50.0}, threshold=0.5)
    nlp = grounded_nlp(tiny_llama_dir, reader, weights, **{"components.llama_qa.selector.answerability": True,
                                                           "components.llama_qa.reader.no_answer_threshold": 0.0})
    text = "The revenue of Acme Corp grew in 2020. Its factory is in Ohio."
    for record in ask(nlp, text, ["When did the revenue grow?", "Why did the revenue grow?"]):
        assert record["answerable"] is False and record["text"] == "" and record["start_char"] is None


@pytest.mark.parametrize("reader_spans", [False, True], ids=["spacy-candidates", "with-reader-spans"])
def test_fitting_replays_the_span_grounded_mode_answers_with_the_reader(trained, tiny_llama_dir, tmp_path,
                                                                       reader_spans):
    """One ranking rule with the reader too: fitting.ranking, on what recording reads, chooses
    the span the pipeline answers with; the recording holds the reader's best spans, which the
    replay offers only to weights that weigh them, as the pipeline does."""
    import torch

    from nlpipe.components.fitting import ranking
    from nlpipe.components.recording import qa_component, record
    from nlpipe.components.selection import FEATURES
    from nlpipe.squad import SquadParagraph

    reader, _ = trained
    chosen = {"reader_overlap": 2.0, "reader_exact": 0.5, "near": 0.5, "likelihood": 0.3, "expected_type": 0.5}
    if reader_spans:
        chosen.update(reader_first=3.0, reader_top=1.0, reader_overlap=0.5)
    nlp = grounded_nlp(tiny_llama_dir, reader, reader_weights(tmp_path / "w.json", chosen))
    qa = qa_component(nlp)
    context = ("The Eiffel Tower in Paris was designed by Gustave Eiffel's company and opened in March 1889 "
               "for the World's Fair. It is 330 metres tall, and about seven million people visit it each year.")
    questions = ["Who designed the tower?", "When did it open?", "How tall is it?", "How many people visit it?"]
    examples = {e.question: e for e in record(nlp, [SquadParagraph(context, [(str(i), q, ["x"])
                                                                             for i, q in enumerate(questions)], "T")])}
    assert examples and all(e.context["reader_no_answer"] > 0 for e in examples.values())
    assert any(row["reader_overlap"] > 0 for e in examples.values() for row in e.rows)
    assert any(any(e.reader_only) for e in examples.values())  # spans of the reader's alone were recorded
    answers = {a["question"]: a["text"] for a in ask(nlp, context, questions)}
    weights = torch.tensor([qa.selector.weights[name] for name in FEATURES])
    chose_reader_only = False
    for question, example in examples.items():
        best, _ = ranking(example, weights, list(FEATURES), qa.selector.max_candidates, qa.selector.lexicon)
        assert example.texts[best] == answers[question], question
        chose_reader_only |= example.reader_only[best]
    assert chose_reader_only == reader_spans


def test_grounded_mode_weighs_the_verifiers_no_answer(trained, tiny_llama_dir, tmp_path, monkeypatch):
    """A reader with a verifier (llm.verifier, fitted by nlpipe train) gives each reading the
    verifier's P(no answer), read after the question's best-matching sentences, and the
    answerability model weighs it: here it alone decides, with a cut between the two lowest.
    A reader without one gives None, which the model reads as 0."""
    import shutil

    from nlpipe.components.selection import question_context
    from nlpipe.jobs import train_verifier

    reader, squad = trained
    verified_reader = tmp_path / "reader"
    shutil.copytree(reader, verified_reader)
    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    result = train_verifier([squad], verified_reader, model=str(tiny_llama_dir), device="cpu", dtype="float32",
                            folds=2)
    assert result.questions == 13 and (verified_reader / "folds" / "verifier-1" / "verifier.json").is_file()
    text = "Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891 and studied physics."
    questions = ["When did Marie Curie move to Paris?", "Where was Marie Curie born?", "What did Marie Curie eat?"]

    def readings(folder, weights, answerability=True):
        nlp = grounded_nlp(tiny_llama_dir, folder, weights,
                           **{"components.llama_qa.selector.answerability": answerability})
        qa = nlp.get_pipe("llama_qa")
        doc = nlp(text)
        doc._.questions = questions
        asked = qa.ask([doc])
        return nlp, qa, asked, qa.readings(asked)

    _, qa, asked, plain = readings(reader, reader_weights(tmp_path / "w.json", {"reader_exact": 1.0}))
    assert [r.verified for r in plain] == [None] * 3
    assert question_context(asked[0].question, asked[0].doc, asked[0].ranked, plain[0])["verifier_no_answer"] == 0.0
    weighing = reader_weights(tmp_path / "v.json", {"reader_exact": 1.0}, {"verifier_no_answer": -1.0}, threshold=0.5)
    _, qa, asked, verified = readings(verified_reader, weighing)
    chances = [r.verified for r in verified]
    assert all(0.0 < p < 1.0 for p in chances) and chances == qa.reader.verify(asked, qa.llm)
    # Nothing weighs it (answering whenever possible, or weights without it): the verifier does not
    # read, a quarter of answering's time saved.
    for unweighed, answerability in ((weighing, False), (tmp_path / "w.json", True)):
        assert [r.verified for r in readings(verified_reader, unweighed, answerability)[3]] == [None] * 3
    low, second = sorted(chances)[:2]
    assert second - low > 1e-4
    cut = (low + second) / 2
    weights = reader_weights(tmp_path / "cut.json", {"reader_exact": 1.0},
                             {"bias": 1000.0 * cut, "verifier_no_answer": -1000.0}, threshold=0.5)
    nlp, *_ = readings(verified_reader, weights)
    assert [record["answerable"] for record in ask(nlp, text, questions)] == [p < cut for p in chances]
