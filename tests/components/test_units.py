import pytest

from nlpipe.components.units import measure_clash, stated_dimensions


@pytest.mark.parametrize("text, dimensions", [
    ("1.8 hectares", {"area"}), ("330 metres", {"length"}), ("617 ft", {"length"}), ("6 feet 2 inches", {"length"}),
    ("100–106 °F", {"temperature"}), ("72 minutes", {"duration"}), ("two weeks", {"duration"}),
    ("about 9.81 meters per second squared", {"rate"}), ("88 km/h", {"rate"}),
    ("$40 per barrel", {"rate"}), ("12 per cent", set()), ("1/2 mile", {"length"}),
    ("265.7 nautical miles", {"length"}),
    # No number, or no unit known here: nothing stated, so nothing can clash.
    ("a square", set()), ("the long day", set()), ("since 1979", set()), ("number 24", set()), ("$5 million", set()),
])
def test_stated_dimensions(text, dimensions):
    assert stated_dimensions(text) == dimensions


@pytest.mark.parametrize("qtype, text, label, clash", [
    ("how tall", "1.8 hectares", "QUANTITY", True), ("how tall", "330 metres", "QUANTITY", False),
    ("how long", "2,850 kilometres", "QUANTITY", False), ("how long", "72 minutes", "TIME", False),
    ("how long", "1.8 hectares", "", True), ("how high", "100–106 °F", "", False),
    ("how fast", "about 9.81 meters per second squared", "", False), ("how far", "88 km/h", "", True),
    ("how high", "$40 per barrel", "MONEY", False), ("how heavy", "40 km", "", True),
    ("how old", "45 years", "DATE", False),
    # A date is no height, but it may say how long or how old; words without a number are no height either.
    ("how tall", "20 October 1973", "DATE", True), ("how old", "20 October 1973", "DATE", False),
    ("how long", "until 1796", "DATE", False), ("how tall", "the roof", "", True),
    ("how far", "Lake Balkhash", "LOC", False), ("how long", "the Lower Paleolithic period", "", False),
    # Not a measurement of one kind: never filtered.
    ("how large", "1.8 hectares", "QUANTITY", False), ("how many", "40 km", "", False), ("what", "Paris", "GPE", False),
])
def test_measure_clash(qtype, text, label, clash):
    assert measure_clash(qtype, text, label) is clash
