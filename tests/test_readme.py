"""README.md's set-up line and its Python snippets, run as written."""

import os
import re
import subprocess
import sys

import pytest

from .conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", README, re.S | re.M)


def test_first_code_block_is_the_whole_set_up_and_run_in_one_line():
    first = re.search(r"^```(\w+)\n(.*?)^```$", README, re.S | re.M)
    language, block = first.groups()
    assert language == "bash" and block.count("\n") == 1, block  # one line to paste
    steps = [step.strip() for step in block.strip().split("&&")]
    assert steps[0].startswith("python3 -m venv") and steps[-1].startswith("nlpipe run qa ")
    assert any(step.startswith("pip install torch==") and "/whl/cpu" in step for step in steps)
    assert any(step.startswith("pip install -e .") and "aliases/en_core_web_sm" in step for step in steps)


def test_the_test_command_installs_what_the_snippets_need():
    command = README.split("<!-- test-command -->", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    assert "./aliases/en_core_web_sm" in command


@pytest.mark.slow  # the real model and spaCy pipeline
@pytest.mark.parametrize("snippet", code_blocks("python"), ids=lambda s: s.splitlines()[0][:40])
def test_python_snippet_runs_as_written(snippet, real_llm_dir, tmp_path):
    # Outside the checkout, as a user's script would be; the model comes from where it already is.
    env = {**os.environ, "NLPIPE_MODELS": str(real_llm_dir.parent)}
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_readme_has_the_snippets_the_slow_test_runs():
    snippets = code_blocks("python")
    assert any('spacy.load("en_core_web_sm")' in s for s in snippets)
    assert any("from nlpipe.llm.engine import Llama" in s for s in snippets)


def test_every_input_and_questions_file_the_readme_names_is_in_the_checkout():
    named = set(re.findall(r"--(?:input|questions) (\S+)", README)) - {"-"}
    assert named and not {path for path in named if not (REPO / path).exists()}
