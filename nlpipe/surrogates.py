"""Lone surrogates in text: replaced by U+FFFD, which keeps every character offset, and reported."""

import re

# Lone surrogates (a JSON "\ud800" escape, an undecodable byte in a file name) cannot be
# written as UTF-8; spaCy and the JSONL writer would fail on them.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def repair_questions(questions: list[str]) -> tuple[list[str], int]:
    """`questions` with every lone surrogate replaced by U+FFFD, and how many there were."""
    repaired = [LONE_SURROGATE.subn("\ufffd", question) for question in questions]
    return [question for question, _ in repaired], sum(count for _, count in repaired)


def lone_surrogates_warning(found: dict[str, int]) -> dict:
    """The warning of a document (or Doc) whose lone surrogates were replaced: `found` counts
    them by where they were (id, text, questions)."""
    where = ", ".join(f"{count} in the {name}" for name, count in found.items() if count)
    return {"type": "lone_surrogates", "message": f"lone surrogates ({where}) cannot be UTF-8 and were replaced "
            "by U+FFFD; offsets are unchanged"}
