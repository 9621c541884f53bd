"""Chat templates rendered within a budget.

A model's chat template is code from its files. transformers renders it in jinja2's sandbox,
which stops a template from reaching Python internals, not from filling memory: `{{ 'x' *
8000000000 }}`, or three nested loops over range(100000) that print, took 8-10 GB, then
MemoryError. Here the template is compiled in transformers' own environment (its filters,
globals and extensions, so it renders the same text), overlaid with a budget per prompt: the
strings and lists its `*` makes, the numbers its `**` and range() make, and the text it renders
(blocks and macros included) all count against MAX_RENDER_UNITS, checked before each is made.
Not counted: `~` joins and filters (they only grow what was counted), and loops over a sequence
already made that output nothing, which cost time, not memory.
"""

import operator
from contextvars import ContextVar
from functools import lru_cache

import jinja2
from jinja2.sandbox import safe_range

# Characters, items or bytes one prompt's render may make in all: a prompt is far smaller (a
# context window of 128k tokens is well under a million characters).
MAX_RENDER_UNITS = 10_000_000
OPERATORS = {"*": operator.mul, "**": operator.pow}  # the ones that can make something huge

_budget: ContextVar["_Budget"] = ContextVar("chat_template_budget")  # of the render under way


class _Budget:
    def __init__(self):
        self.left = MAX_RENDER_UNITS

    def spend(self, units: int) -> None:
        self.left -= max(units, 0)
        if self.left < 0:
            raise jinja2.TemplateError(f"it makes more than {MAX_RENDER_UNITS:,} characters, items or numbers "
                                       "for one prompt, far more than a prompt holds")


def _size(operator_name: str, left, right) -> int:
    """About how big `left <operator> right` comes out (items, characters or bytes), before it is made."""
    if operator_name == "*":
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, (str, list, tuple)) and isinstance(times, int):
                return len(sequence) * times
    elif isinstance(left, int) and isinstance(right, int):
        return right * left.bit_length() // 8
    return 0


def _binop(context, operator_name: str, left, right):
    _budget.get().spend(_size(operator_name, left, right))
    return OPERATORS[operator_name](left, right)


def _range(*args: int) -> range:
    numbers = safe_range(*args)  # the sandbox's own: at most 100,000 at a time
    _budget.get().spend(len(numbers))
    return numbers


def _concat(pieces) -> str:
    kept = []
    for piece in pieces:
        _budget.get().spend(len(piece))
        kept.append(piece)
    return "".join(kept)


@lru_cache(maxsize=16)
def _compiled(source: str) -> jinja2.Template:
    # Private, but what apply_chat_template compiles with (imported here, as transformers is
    # everywhere in nlpipe: only when a model is used). Its environment is taken from an empty
    # template: compiling `source` there would fold `'x' * 8000000000` into a constant, unbounded.
    from transformers.utils.chat_template_utils import _compile_jinja_template

    environment = _compile_jinja_template("").environment.overlay()
    # Set before compiling: the compiled code calls call_binop only for the operators named here.
    environment.intercepted_binops = frozenset(OPERATORS)
    environment.call_binop = _binop
    environment.concat = _concat
    return environment.from_string(source, globals={"range": _range})


def render_chat(tokenizer, messages: list[dict]) -> str:
    """`messages` through the tokenizer's chat template, ready for the reply, as
    apply_chat_template(add_generation_prompt=True, tokenize=False) renders them; a
    jinja2.TemplateError when the render goes over its budget."""
    token = _budget.set(_Budget())
    try:
        return _compiled(tokenizer.get_chat_template()).render(
            messages=messages, tools=None, documents=None, add_generation_prompt=True,
            **tokenizer.special_tokens_map)
    finally:
        _budget.reset(token)
