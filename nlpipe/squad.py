"""SQuAD-format data: paragraphs with their questions and reference answers, read from and written
to v1.1 and v2.0 files, and unanswerable questions made from answerable ones.

A v2.0 question marked `is_impossible` has no references."""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import Errors, InputError
from .metrics import normalize_answer


@dataclass
class SquadParagraph:
    context: str
    questions: list[tuple[str, str, list[str]]]  # (id, question, reference answers: [] if unanswerable)
    title: str = ""  # the article's


def read_squad(path, limit: int | None = None) -> Iterator[SquadParagraph]:
    """Paragraphs of a SQuAD-format file, holding at most `limit` questions in all."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(Errors.E022.format(path=path, reason=err)) from None
    remaining = limit if limit is not None else float("inf")
    for article in data:
        for paragraph in article["paragraphs"]:
            if remaining <= 0:
                return
            qas = paragraph["qas"][:int(min(remaining, len(paragraph["qas"])))]
            remaining -= len(qas)
            yield SquadParagraph(paragraph["context"], [(qa["id"], qa["question"], _references(qa)) for qa in qas],
                                 str(article.get("title", "")))


def _references(qa: dict) -> list[str]:
    # v2.0 keeps the plausible-looking answers of an impossible question apart ("plausible_answers").
    return [] if qa.get("is_impossible") else [a["text"] for a in qa.get("answers", [])]


def write_squad(paragraphs: list[SquadParagraph], path) -> None:
    """A SQuAD 2.0 file of these paragraphs (questions without references are impossible)."""
    articles: dict[str, list[dict]] = {}
    for p in paragraphs:
        articles.setdefault(p.title, []).append({"context": p.context, "qas": [
            {"id": qid, "question": question, "is_impossible": not references,
             "answers": [{"text": r, "answer_start": p.context.find(r)} for r in references]}
            for qid, question, references in p.questions]})
    data = [{"title": title, "paragraphs": ps} for title, ps in articles.items()]
    Path(path).write_text(json.dumps({"version": "v2.0", "data": data}, ensure_ascii=False), encoding="utf-8")


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def unanswerable_questions(paragraphs: list[SquadParagraph]) -> list[SquadParagraph]:
    """One unanswerable question for each answerable one, made from the data itself: the same
    question about its own paragraph with every sentence that holds an answer cut out (the
    text is still about the question's topic, as SQuAD 2.0's are), or, where that leaves no
    text or still holds an answer, about the paragraph of the same article that shares most of
    the question's words without holding any of its answers. The two kinds alternate."""
    # Each context normalised once: every question of an article looks at all its paragraphs.
    by_article: dict[str, list[_Normalised]] = {}
    for paragraph in paragraphs:
        by_article.setdefault(paragraph.title, []).append(_Normalised.of(paragraph.context))
    made = []
    for paragraph in paragraphs:
        for k, (qid, question, references) in enumerate(paragraph.questions):
            if not references:
                continue
            answers = _answer_needles(references)
            context = _without_answers(paragraph.context, answers) if k % 2 == 0 else None
            kind = "cut"
            if context is None:
                context, kind = _other_paragraph(question, answers, by_article[paragraph.title]), "other"
            if context is not None:
                made.append(SquadParagraph(context, [(f"{qid}-noans-{kind}", question, [])], paragraph.title))
    return made


@dataclass
class _Normalised:
    """A text with its padded normalisation (_normal) and the set of its normalised words."""

    text: str
    normal: str
    words: set[str]

    @classmethod
    def of(cls, text: str) -> "_Normalised":
        normal = _normal(text)
        return cls(text, normal, set(normal.split()))


def _normal(text: str) -> str:
    """`text` normalised as SQuAD answers are, padded so that " answer " finds whole words."""
    return f" {normalize_answer(text)} "


def _answer_needles(references: list[str]) -> list[str]:
    """The references as _holds looks for them: normalised, padded, empty ones left out."""
    return [f" {normal} " for normal in map(normalize_answer, references) if normal]


def _holds(normal: str, needles: list[str]) -> bool:
    """Whether a text normalised by _normal holds one of the answers (see _answer_needles)."""
    return any(needle in normal for needle in needles)


def _without_answers(context: str, needles: list[str]) -> str | None:
    kept = [s for s in _SENTENCE_END.split(context) if not _holds(_normal(s), needles)]
    text = " ".join(kept)
    return text if len(kept) >= 2 and not _holds(_normal(text), needles) else None


def _other_paragraph(question: str, needles: list[str], paragraphs: list[_Normalised]) -> str | None:
    """The paragraph sharing most of the question's words among those that hold none of its answers."""
    words = set(normalize_answer(question).split())
    others = [p for p in paragraphs if not _holds(p.normal, needles)]
    best = max(others, key=lambda p: len(words & p.words), default=None)
    return best.text if best is not None else None
