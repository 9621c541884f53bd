"""nlpipe.llm.engine.Llama on the tiny random Llama, on CPU."""

import json
import shutil

import pytest
import torch

from nlpipe.errors import ModelError
from nlpipe.llm import catalog, engine
from nlpipe.llm.devices import resolve_dtype
from nlpipe.llm.engine import Completion, Failure, FailureKind, Llama, PromptBatch, Request
from nlpipe.llm.generation import Generation

MESSAGES = [{"role": "system", "content": "Answer the question with a short phrase from the context."},
            {"role": "user", "content": "Who designed the Eiffel Tower?"}]


@pytest.fixture()
def llama(tiny_llama_dir):
    # float32 whatever the CPU: the tests compare log-probabilities of different batchings to 1e-4.
    return Llama(tiny_llama_dir, device="cpu", dtype="float32", max_new_tokens=6)


@pytest.fixture()
def count_loads(monkeypatch):
    calls = []
    real = engine.load_model

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "load_model", counting)
    return calls


def _prompts(llama):
    return [llama.encode_chat([{"role": "user", "content": text}])
            for text in ("Who designed it?", "What was the score of Super Bowl 50 in Santa Clara?", "Where?")]


def test_loading_is_lazy(tiny_llama_dir, count_loads):
    llama = Llama(tiny_llama_dir, device="cpu")
    assert count_loads == []
    assert llama._loaded is None
    model = llama.model
    assert len(count_loads) == 1
    assert llama.tokenizer is not None and llama.model is model
    assert len(count_loads) == 1  # loaded once
    assert model.device == torch.device("cpu")
    assert next(model.parameters()).dtype == resolve_dtype("auto", torch.device("cpu"))  # dtype 'auto'


def test_missing_path_fails_only_on_load(tmp_path, count_loads):
    llama = Llama(tmp_path / "no-such-model", device="cpu")  # does not raise
    with pytest.raises(ModelError) as caught:
        llama.model
    assert str(caught.value).startswith("E013")
    assert str(tmp_path / "no-such-model") in str(caught.value)


def test_bad_device_fails_only_on_load(tiny_llama_dir):
    from nlpipe.errors import DeviceError

    llama = Llama(tiny_llama_dir, device="tpu")
    with pytest.raises(DeviceError, match="E011"):
        llama.load()


def test_default_model_is_pulled_on_first_use(tmp_path, tiny_llama_dir, monkeypatch):
    pulled = []

    def fake_pull(name, target, on_step=lambda *a: None):
        pulled.append((name, target))
        shutil.copytree(tiny_llama_dir, target)
        return target

    monkeypatch.setattr(catalog, "pull", fake_pull)
    monkeypatch.setenv("NLPIPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NLPIPE_MODELS", raising=False)
    target = tmp_path / "cache" / "models" / "smollm2-135m"  # a known model's name means the per-user cache
    llama = Llama(tmp_path / "smollm2-135m", device="cpu")
    assert pulled == []
    assert llama.model is not None
    assert pulled == [("smollm2-135m", target)]
    llama2 = Llama("smollm2-135m", device="cpu")
    llama2.load()
    assert len(pulled) == 1  # it exists now


def test_encode_chat_uses_the_template(llama):
    tokens = llama.encode_chat(MESSAGES)
    assert isinstance(tokens, list) and all(isinstance(t, int) for t in tokens)
    text = llama.tokenizer.decode(tokens)
    assert text.startswith("<|im_start|>system\n")
    assert "<|im_start|>user\nWho designed the Eiffel Tower?<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_encode_chat_without_template(llama):
    llama.tokenizer.chat_template = None
    tokens = llama.encode_chat(MESSAGES)
    text = llama.tokenizer.decode(tokens)
    assert "<|im_start|>" not in text
    assert text.endswith("Who designed the Eiffel Tower?\nAnswer:")


def test_ids(llama):
    tokenizer = llama.tokenizer
    assert llama.eos_ids == [tokenizer.eos_token_id]
    assert llama.pad_id == tokenizer.pad_token_id
    assert llama.context_length == 512
    assert llama.count_tokens("Who") == len(tokenizer("Who", add_special_tokens=False)["input_ids"])


def _edit_config(folder, edit):
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    edit(config)
    path.write_text(json.dumps(config), encoding="utf-8")


def test_a_config_without_its_context_window_is_refused(tiny_llama_copy):
    _edit_config(tiny_llama_copy, lambda config: config.pop("max_position_embeddings"))
    llama = Llama(tiny_llama_copy, device="cpu")
    assert llama.model.config.max_position_embeddings == 2048  # transformers' LlamaConfig default, not the model's
    with pytest.raises(ModelError, match="^E056"):
        llama.context_length
    with pytest.raises(ModelError, match="^E056"):
        llama.complete(["Where is it?"])


def test_a_context_window_of_none_is_refused_on_loading(tiny_llama_copy):
    _edit_config(tiny_llama_copy, lambda config: config.update(max_position_embeddings=None))
    with pytest.raises(ModelError, match="^E015"):
        Llama(tiny_llama_copy, device="cpu").context_length


def test_complete(llama):
    prompts = _prompts(llama)
    completions = llama.complete(prompts)
    assert len(completions) == len(prompts)
    for completion in completions:
        assert isinstance(completion, Completion)
        assert 0 < len(completion.tokens) <= 6
        assert len(completion.logprobs) == len(completion.tokens)
        assert all(lp <= 0.0 for lp in completion.logprobs)
        assert completion.text == llama.tokenizer.decode(completion.tokens, skip_special_tokens=True).strip()
        assert completion.mean_logprob == pytest.approx(sum(completion.logprobs) / len(completion.logprobs))
        assert llama.eos_ids[0] not in completion.tokens
    # batching does not change the greedy answer
    assert llama.complete(prompts[1:2])[0].tokens == completions[1].tokens


def test_complete_nothing(llama, count_loads):
    assert llama.complete([]) == []


def test_mean_logprob_of_nothing():
    assert Completion(text="", tokens=[], logprobs=[]).mean_logprob is None
    assert Completion(text="a", tokens=[1, 2], logprobs=[-1.0, -2.0]).mean_logprob == -1.5


def test_prompt_too_long_for_context_fails_alone(llama):
    prompt = llama.encode_chat(MESSAGES)
    llama.max_new_tokens = 600
    [failure] = llama.complete([prompt])
    assert isinstance(failure, Failure) and failure.kind is FailureKind.CONTEXT_OVERFLOW
    message = failure.message
    assert message.startswith("E018") and f"{len(prompt)} tokens" in message and "512" in message and "600" in message
    assert "max_new_tokens" in message


def test_prompt_exactly_fills_context(llama):
    llama.max_new_tokens = 2
    prompt = [5] * (llama.context_length - 2)
    fits, too_long = llama.complete([prompt, prompt + [5]])
    assert isinstance(fits, Completion) and len(fits.logprobs) <= 2
    assert too_long.kind is FailureKind.CONTEXT_OVERFLOW


def test_out_of_memory_halves_the_batch(llama, monkeypatch):
    seen = []

    def generate_one_at_a_time(model, prompts, **settings):
        seen.append(len(prompts))
        if len(prompts) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [Generation(tokens=prompts[0], logprobs=[-1.0])]  # the prompt back: its text says which

    monkeypatch.setattr(engine, "generate", generate_one_at_a_time)
    prompts = [llama.encode_text(str(i)) for i in range(5)]
    completions = llama.complete(prompts)
    assert [c.text for c in completions] == [str(i) for i in range(5)]
    assert [c.tokens for c in completions] == prompts
    assert seen[0] == 5 and seen.count(1) == 5


def test_out_of_memory_halving_keeps_real_results(llama, monkeypatch):
    prompts = _prompts(llama)
    expected = [c.tokens for c in llama.complete(prompts)]
    real = engine.generate

    def flaky(model, prompts, **settings):
        if len(prompts) > 1:
            raise torch.OutOfMemoryError("out of memory")
        return real(model, prompts, **settings)

    monkeypatch.setattr(engine, "generate", flaky)
    assert [c.tokens for c in llama.complete(prompts)] == expected


def test_out_of_memory_on_a_single_prompt(llama, monkeypatch):
    def always(model, prompts, **settings):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine, "generate", always)
    failures = llama.complete([[1, 2, 3], [4, 5]])
    assert [f.kind for f in failures] == [FailureKind.OUT_OF_MEMORY] * 2
    message = failures[0].message
    assert message.startswith("E021")
    assert "cpu" in message and "Tried to allocate" in message and "max_batch_tokens" in message


def test_sampling_is_reproducible(tiny_llama_dir):
    llama = Llama(tiny_llama_dir, device="cpu", max_new_tokens=8, temperature=5.0, seed=3)
    prompts = _prompts(llama)
    first = llama.complete(prompts)
    second = llama.complete(prompts)
    assert [c.tokens for c in first] == [c.tokens for c in second]
    assert [c.logprobs for c in first] == [c.logprobs for c in second]

    greedy = Llama(tiny_llama_dir, device="cpu", max_new_tokens=8).complete(prompts)
    other_seed = Llama(tiny_llama_dir, device="cpu", max_new_tokens=8, temperature=5.0, seed=4).complete(prompts)
    assert [c.tokens for c in first] != [c.tokens for c in greedy]
    assert [c.tokens for c in first] != [c.tokens for c in other_seed]


def test_pad_falls_back_to_eos(llama):
    llama.tokenizer.pad_token = None
    assert llama.pad_id == llama.tokenizer.eos_token_id


def test_no_pad_and_no_eos_is_e019(llama):
    llama.tokenizer.pad_token = None
    llama.tokenizer.eos_token = None
    llama.model.generation_config.eos_token_id = None
    assert llama.eos_ids == []
    with pytest.raises(ModelError, match="^E019"):
        llama.pad_id


def test_complete_takes_strings_and_per_call_settings(llama):
    text = "Where is the Eiffel Tower?"
    by_string = llama.complete([text], max_gen_len=3)[0]
    by_ids = llama.complete([llama.tokenizer(text)["input_ids"]], max_gen_len=3)[0]
    assert by_string.tokens == by_ids.tokens and len(by_string.tokens) <= 3
    echoed = llama.complete([text], max_gen_len=3, echo=True)[0]
    prompt_ids = llama.tokenizer(text)["input_ids"]
    assert echoed.tokens == prompt_ids + by_string.tokens
    assert echoed.logprobs[0] == 0.0 and len(echoed.logprobs) == len(echoed.tokens)
    sampled = [llama.complete([text], max_gen_len=5, temperature=1.5, seed=s)[0].tokens for s in (1, 1, 2)]
    assert sampled[0] == sampled[1]


def test_grouped_generation_keeps_input_order(llama):
    prompts = _prompts(llama)
    expected = [c.tokens for c in llama.complete(prompts)]
    llama.max_batch_tokens = 1  # every prompt alone
    assert [c.tokens for c in llama.complete(prompts)] == expected


def test_a_loaded_engine_pickles_without_its_weights(llama):
    import pickle

    llama.load()
    clone = pickle.loads(pickle.dumps(llama))
    assert clone._loaded is None and clone.path == llama.path and clone.max_new_tokens == llama.max_new_tokens


def test_a_chat_template_that_reaches_for_python_internals_is_refused(tiny_llama_copy, tmp_path):
    import json

    marker = tmp_path / "pwned"
    config_file = tiny_llama_copy / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config["chat_template"] = ("{{ ''.__class__.__mro__[1].__subclasses__() }}"
                               f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}")
    config_file.write_text(json.dumps(config))
    (tiny_llama_copy / "chat_template.jinja").unlink(missing_ok=True)
    llm = Llama(tiny_llama_copy, device="cpu")
    with pytest.raises(ModelError, match="^E024"):
        llm.encode_chat([{"role": "user", "content": "hi"}])
    assert not marker.exists()


def test_prefixes_are_kept_only_when_shared():
    shared = PromptBatch.of([Request([1, 2, 3], 2), Request([1, 2, 4, 5], 2), Request([9, 6], 1)])
    assert (shared.prefixes, shared.prefix_index, shared.suffixes) == ([[1, 2], [9]], [0, 0, 1], [[3], [4, 5], [6]])
    alone = PromptBatch.of([Request([1, 2, 3], 2), Request([9, 6], 1)])  # nothing to share: whole prompts
    assert (alone.prefixes, alone.suffixes) == ([], [[1, 2, 3], [9, 6]])
    # a suffix keeps at least one token, whatever `shared` says
    assert PromptBatch.of([Request([1, 2], 5), Request([1, 2], 5)]).suffixes == [[2], [2]]


def _scoring_case(llama):
    prompts = [llama.encode_text("Context: Paris is in France.") + llama.encode_text(f" Question {i}?") for i in range(3)]
    shared = len(llama.encode_text("Context: Paris is in France."))
    requests = [Request(p, shared, [llama.encode_text(t) for t in (" Paris", " France is big", " x")]) for p in prompts]
    requests[1].continuations = []  # a prompt without candidates gets no scores
    requests.append(Request(llama.encode_text("Context: Rome.") + llama.encode_text(" Where?"), 0,
                            [llama.encode_text(" Rome")]))
    return requests


def test_rank_in_token_bounded_groups_equals_one_pass(llama):
    requests = _scoring_case(llama)
    whole = llama.rank(requests)
    llama.max_batch_tokens = 1  # every prompt in a group of its own
    grouped = llama.rank(requests)
    assert whole[1] == grouped[1] == []
    for a_group, b_group in zip(whole, grouped):
        for a, b in zip(a_group, b_group, strict=True):
            assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-4)
    assert [row for row, _ in llama.rank_stream(requests)] == [0, 1, 2, 3]


def test_rank_out_of_memory_halves_then_fails_one_prompt_alone(llama, monkeypatch):
    requests = _scoring_case(llama)
    expected = llama.rank(requests)
    real, rome = engine.score_batch, llama.encode_text("Context: Rome.")

    def oom_on_rome(model, suffixes, groups, pad_id, prefixes=None, prefix_index=None, **kwargs):
        if any(p == rome for p in prefixes or []) or any(s[:len(rome)] == rome for s in suffixes):
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real(model, suffixes, groups, pad_id, prefixes, prefix_index, **kwargs)
    monkeypatch.setattr(engine, "score_batch", oom_on_rome)
    scores = llama.rank(requests)
    assert scores[3].kind is FailureKind.OUT_OF_MEMORY and scores[1] == []
    for i in (0, 2):
        assert [s.total_logprob for s in scores[i]] == pytest.approx([s.total_logprob for s in expected[i]], abs=1e-4)


def test_rank_checks_the_window_and_the_input(llama):
    llama.max_new_tokens = 2
    window = llama.context_length
    ok, too_long, empty = llama.rank([Request([5] * (window - 2), 0, [[1, 2]]), Request([5] * (window - 1), 0, [[1, 2]]),
                                      Request([5, 6], 0, [[1], []])])
    assert isinstance(ok, list) and len(ok) == 1
    assert too_long.kind is FailureKind.CONTEXT_OVERFLOW and empty.kind is FailureKind.BAD_INPUT
    with pytest.raises(ModelError, match="^E018"):
        llama.score([5] * window, [[1]])


def test_an_absurd_max_new_tokens_fails_every_question_naming_it(llama):
    llama.max_new_tokens = 100_000_000
    [failure] = llama.rank([Request([5, 6, 7], 0, [[1]])])
    assert failure.kind is FailureKind.CONTEXT_OVERFLOW and "max_new_tokens" in failure.message
    assert "100000000" in failure.message


def test_no_deprecation_warning_from_our_model_calls(llama):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        llama.complete([[1, 2, 3]], max_gen_len=2)
        llama.rank([Request([1, 2, 3], 0, [[4, 5]])])


@pytest.mark.parametrize("template", ["{{ raise_exception('') }}", "{{ 'x' * 8 }}{{ raise_exception('no reply') }}"])
def test_a_chat_template_that_fails_without_a_message_is_one_line(tiny_llama_dir, template):
    """A template that runs out of memory raises MemoryError, whose message is empty: the error
    formatting must still give one line (it raised IndexError)."""
    llama = Llama(tiny_llama_dir, device="cpu")
    llama.tokenizer.chat_template = template
    with pytest.raises(ModelError, match="E024") as caught:
        llama.chat_text([{"role": "user", "content": "hi"}])
    assert str(caught.value).strip()


TRIPLE_LOOP = ("{% for i in range(100000) %}{% for j in range(100000) %}{% for k in range(100000) %}x"
               "{% endfor %}{% endfor %}{% endfor %}")


@pytest.mark.parametrize("template", ["{{ 'x' * 8000000000 }}", "{{ ([0] * 8000000000) | length }}",
                                      "{{ (2 ** 80000000000) > 1 }}", TRIPLE_LOOP],
                         ids=["string-times", "list-times", "power", "triple-loop"])
def test_a_chat_template_that_would_fill_memory_is_stopped_within_its_budget(tiny_llama_dir, template):
    """Rendered by transformers alone, each took gigabytes (8-10 GB, then MemoryError) or forever:
    what a render makes is counted before it is made."""
    llama = Llama(tiny_llama_dir, device="cpu")
    llama.tokenizer.chat_template = template
    with pytest.raises(ModelError, match=r"^E024: .* failed: it makes more than 10,000,000 characters"):
        llama.chat_text([{"role": "user", "content": "hi"}])


def test_a_chat_template_renders_what_transformers_renders(llama):
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Where is Paris?"}]
    expected = llama.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert llama.chat_text(messages) == expected and "Where is Paris?" in expected


def test_first_line_of_an_error_without_a_message_is_its_type():
    from nlpipe.errors import first_line

    assert first_line(MemoryError()) == "MemoryError"
    assert first_line(ValueError("bad\nmore")) == "bad"
