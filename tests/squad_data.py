"""Tiny SQuAD v2.0 data for training tests: three articles, answerable and unanswerable questions."""

import json
from pathlib import Path

from nlpipe.training.train import TrainSettings

ARTICLES = {
    "Rivers": [
        ("The Danube flows through ten countries. It is about 2,850 kilometres long.",
         [("How long is the Danube?", ["about 2,850 kilometres", "2,850 kilometres"]),
          ("How many countries does the Danube flow through?", ["ten"]),
          ("Who painted the Danube?", [])]),
        ("The Rhine rises in the Swiss Alps and reaches the North Sea in the Netherlands.",
         [("Where does the Rhine rise?", ["the Swiss Alps", "Swiss Alps"]),
          ("Where does the Rhine reach the sea?", ["the Netherlands"])]),
    ],
    "People": [
        ("Marie Curie was born in Warsaw in 1867. She moved to Paris in 1891 to study.",
         [("When did Marie Curie move to Paris?", ["1891"]),
          ("Where was Marie Curie born?", ["Warsaw"]),
          ("What did Marie Curie eat?", [])]),
        ("The Eiffel Tower was designed by the engineer Gustave Eiffel and completed in 1889.",
         [("Who designed the tower?", ["Gustave Eiffel"]),
          ("When was the tower completed?", ["1889"])]),
    ],
    "Sport": [
        ("The Denver Broncos won Super Bowl 50, beating the Carolina Panthers 24 to 10.",
         [("Which team won Super Bowl 50?", ["The Denver Broncos", "Denver Broncos"]),
          ("Who lost Super Bowl 50?", ["the Carolina Panthers"]),
          ("Who sang the anthem?", [])]),
    ],
}
# A head small enough to train in a second on the tiny model's features.
SMALL = TrainSettings(epochs=2, width=16, heads=2, batch_tokens=256, learning_rate=5e-3)


def write_squad(path: Path, articles=ARTICLES) -> Path:
    data = {"version": "v2.0", "data": [
        {"title": title, "paragraphs": [
            {"context": context, "qas": [
                {"id": f"{title}-{p}-{q}", "question": question, "is_impossible": not answers,
                 "answers": [{"text": a, "answer_start": context.find(a)} for a in answers]}
                for q, (question, answers) in enumerate(qas)]}
            for p, (context, qas) in enumerate(paragraphs)]}
        for title, paragraphs in articles.items()]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
