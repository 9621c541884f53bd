"""SQuAD-format questions as training examples: the answer spans as character offsets."""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..squad import read_squad


@dataclass(frozen=True)
class Example:
    qid: str
    article: str
    question: str
    context: str
    references: tuple[str, ...]  # () for an unanswerable question
    spans: tuple[tuple[int, int], ...]  # every place a reference answer occurs in the context

    @property
    def answerable(self) -> bool:
        return bool(self.references)


def answer_spans(context: str, references: list[str]) -> tuple[tuple[int, int], ...]:
    """Every occurrence of every reference in the context. SQuAD's answer_start is not always
    the occurrence meant (the pool's is the first), so all of them count as right; an
    occurrence inside a longer word ("US" in "USB") does not."""
    spans = set()
    for reference in {r.strip() for r in references if r.strip()}:
        for match in re.finditer(re.escape(reference), context):
            start, end = match.span()
            if _word_edge(context, start - 1, start) and _word_edge(context, end - 1, end):
                spans.add((start, end))
    return tuple(sorted(spans))


def _word_edge(text: str, left: int, right: int) -> bool:
    return left < 0 or right >= len(text) or not (text[left].isalnum() and text[right].isalnum())


def read_examples(paths: list[Path]) -> list[Example]:
    """The questions of SQuAD v1.1/v2.0 files; an answerable question whose answers are not in
    its context is left out (nothing to learn from)."""
    examples = []
    for path in paths:
        for paragraph in read_squad(path):
            for qid, question, references in paragraph.questions:
                spans = answer_spans(paragraph.context, references)
                if references and not spans:
                    continue
                examples.append(Example(qid, paragraph.title, question, paragraph.context, tuple(references), spans))
    return examples


def files_digest(paths: list[Path]) -> dict[str, str]:
    """sha256 of each data file, by name: what a trained reader records as its data."""
    return {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def fold_keys(examples: list[Example]) -> tuple[str, list[str]]:
    """What cross-validation splits by: the article, or the paragraph when the data holds a
    single article (questions on one article share its words, so articles are the honest unit)."""
    if len({e.article for e in examples}) > 1:
        return "article", [e.article for e in examples]
    return "paragraph", [hashlib.sha256(e.context.encode()).hexdigest()[:12] for e in examples]


def deal_folds(keys: list[str], k: int) -> list[list[str]]:
    """The distinct keys dealt into k folds of about equal question counts (largest first, each
    into the fold with fewest questions so far; names break ties, so the split is the same
    every run)."""
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    folds: list[list[str]] = [[] for _ in range(min(k, len(counts)))]
    sizes = [0] * len(folds)
    for key in sorted(counts, key=lambda a: (-counts[a], a)):
        smallest = sizes.index(min(sizes))
        folds[smallest].append(key)
        sizes[smallest] += counts[key]
    return folds
