"""Units of measurement: which dimension a measurement question asks for, and which one a
candidate answer states, so that "How tall is it?" is never answered with "1.8 hectares" (nor
with a date, or words without a number: a document that gives no height gets "no answer").

Only units named here can clash; a candidate with no known unit ("number 24", "$5 million",
"100–106 °F" for "How high do fevers run?") never does. A rate ("9.81 metres per second",
"88 km/h", "$40 per barrel") is a rate, whatever its parts; "per cent" is no unit.
"""

import re

_UNITS = {
    "length": "m metre metres meter meters km kilometre kilometres kilometer kilometers cm centimetre centimetres "
              "centimeter centimeters mm millimetre millimetres millimeter millimeters nm nanometre nanometres "
              "nanometer nanometers mile miles mi foot feet ft inch inches yard yards yd",
    "area": "hectare hectares ha acre acres km2 km² m2 m² sq square",
    "volume": "litre litres liter liters gallon gallons cubic l ml",
    "mass": "kg kilogram kilograms kilogramme kilogrammes g gram grams gramme grammes tonne tonnes ton tons lb lbs "
            "pound pounds ounce ounces oz",
    "duration": "second seconds minute minutes hour hours hr hrs day days week weeks month months year years "
                "decade decades century centuries millennium millennia",
    "temperature": "°c °f °k kelvin celsius fahrenheit degree degrees",
    "rate": "mph kph km/h knot knots",
}
UNIT_DIMENSIONS = {word: dimension for dimension, words in _UNITS.items() for word in words.split()}
# What each measurement question may be answered with; questions not listed are never filtered
# ("how large" may be an area, a length, a count of people...).
ASKED_DIMENSIONS = {
    "how tall": {"length"}, "how wide": {"length"}, "how deep": {"length"},
    "how high": {"length", "temperature", "rate"}, "how far": {"length", "duration"},
    "how long": {"length", "duration"}, "how short": {"length", "duration"},
    "how old": {"duration"}, "how heavy": {"mass"}, "how fast": {"rate", "duration"},
}
# Questions whose answer states a number: all 52 answerable ones of these types in the pool do
# (not "how far": "How far west did it extend?" - "Lake Balkhash"; nor "how long": "until 1796").
NUMBER_ANSWERED = {"how tall", "how wide", "how deep", "how high", "how heavy", "how fast", "how old"}
_NUMBER_WORD = re.compile(r"\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
                          r"fifty|sixty|seventy|eighty|ninety|hundred|thousand|million|billion|half|dozen)\b")
_WORD = re.compile(r"°?[^\W\d_]+[²]?\d?(?:/[^\W\d_]+)?|°")


def has_number(text: str) -> bool:
    """Whether `text` states a number, in digits or words."""
    return any(c.isdigit() for c in text) or bool(_NUMBER_WORD.search(text.lower()))


def stated_dimensions(text: str) -> set[str]:
    """The dimensions of the units a number in `text` is measured in (empty: none known)."""
    lowered = re.sub(r"\bper ?cent\b", "percent", text.lower())
    if not has_number(lowered):
        return set()  # "a square", "the long day": no measurement
    if re.search(r"\bper\b|[^\W\d_]/[^\W\d_]", lowered):  # not 1/2: a fraction
        return {"rate"}
    return {UNIT_DIMENSIONS[w] for w in _WORD.findall(lowered) if w in UNIT_DIMENSIONS}


def measure_clash(qtype: str, text: str, label: str = "") -> bool:
    """Whether `text` (an entity labelled `label`) cannot answer the measurement question
    `qtype`: it states a measure of another dimension, no number where the question is answered
    by one ("How tall?"), or a date where no duration is asked for."""
    asked = ASKED_DIMENSIONS.get(qtype)
    if not asked:
        return False
    if qtype in NUMBER_ANSWERED and not has_number(text):
        return True
    if label in ("DATE", "TIME") and "duration" not in asked:
        return True  # "20 October 1973" is no height
    stated = stated_dimensions(text)
    return bool(stated) and not stated & asked
