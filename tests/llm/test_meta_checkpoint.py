"""Meta's Llama checkpoint folders: detected, converted (checked against Meta's forward pass), loaded."""

import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nlpipe.errors import ModelError
from nlpipe.llm import loading
from nlpipe.llm.meta import convert_meta, meta_cache_dir, meta_to_hf
from nlpipe.llm.loading import checkpoint_format, hf_folder, load_model

from ..conftest import CORPUS

PARAMS = {"dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": -1, "multiple_of": 32,
          "ffn_dim_multiplier": 1.3, "norm_eps": 1e-5}
HEAD_DIM = 64 // 4
# Meta's FeedForward width: int(2 * 4 * 64 / 3) = 170, int(1.3 * 170) = 221, rounded up to 32s.
FFN_HIDDEN = 224
# The dimension Meta's fairscale layers split each weight along; the rest are copied to every rank.
SPLIT_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0, "wo": 1, "w2": 1, "tok_embeddings": 1}
TEXT = "Who designed the Eiffel Tower on the Champ de Mars?"


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory) -> Path:
    """A BPE SentencePiece model with byte fallback and no pad id, as Llama 2's tokenizer.model."""
    import sentencepiece

    prefix = tmp_path_factory.mktemp("spm") / "tokenizer"
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_prefix=str(prefix), vocab_size=400, model_type="bpe",
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, minloglevel=2)
    return prefix.with_suffix(".model")


@pytest.fixture(scope="module")
def sp(sentencepiece_model):
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model))


@pytest.fixture(scope="module")
def meta_weights(sp) -> dict[str, torch.Tensor]:
    """Full (unsharded) random weights under Meta's names and in Meta's layout."""
    generator = torch.Generator().manual_seed(0)

    def rand(*shape, scale=0.1, offset=0.0):
        return offset + scale * torch.randn(*shape, generator=generator)

    dim, vocab = PARAMS["dim"], sp.vocab_size()
    q_rows, kv_rows = PARAMS["n_heads"] * HEAD_DIM, PARAMS["n_kv_heads"] * HEAD_DIM
    weights = {"tok_embeddings.weight": rand(vocab, dim, scale=1.0), "norm.weight": rand(dim, offset=1.0),
               "output.weight": rand(vocab, dim),
               "rope.freqs": 1.0 / 10000 ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM)}
    for i in range(PARAMS["n_layers"]):
        layer = f"layers.{i}."
        weights.update({
            layer + "attention.wq.weight": rand(q_rows, dim),
            layer + "attention.wk.weight": rand(kv_rows, dim),
            layer + "attention.wv.weight": rand(kv_rows, dim),
            layer + "attention.wo.weight": rand(dim, q_rows),
            layer + "feed_forward.w1.weight": rand(FFN_HIDDEN, dim),
            layer + "feed_forward.w2.weight": rand(dim, FFN_HIDDEN),
            layer + "feed_forward.w3.weight": rand(FFN_HIDDEN, dim),
            # Norm weights away from 1, so a norm loaded into the wrong place shows.
            layer + "attention_norm.weight": rand(dim, offset=1.0),
            layer + "ffn_norm.weight": rand(dim, offset=1.0)})
    return weights


def split_for_ranks(weights: dict[str, torch.Tensor], n_ranks: int) -> list[dict[str, torch.Tensor]]:
    """What each of `n_ranks` model-parallel ranks saves, as Meta's fairscale layers split them."""
    shards = [{} for _ in range(n_ranks)]
    for name, tensor in weights.items():
        dim = SPLIT_DIM.get(name.split(".")[-2])
        pieces = [tensor] * n_ranks if dim is None else tensor.chunk(n_ranks, dim=dim)
        for shard, piece in zip(shards, pieces):
            shard[name] = piece.clone()  # a chunk would drag its whole storage into the file
    return shards


def write_meta_folder(folder: Path, weights, sentencepiece_model: Path, n_ranks: int, params=PARAMS) -> Path:
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(params))
    shutil.copy(sentencepiece_model, folder / "tokenizer.model")
    for rank, shard in enumerate(split_for_ranks(weights, n_ranks)):
        torch.save(shard, folder / f"consolidated.{rank:02d}.pth")
    (folder / "checklist.chk").write_text("md5sums would be here\n")
    return folder


@pytest.fixture(scope="module", params=[1, 2], ids=["mp1", "mp2"])
def meta_dir(request, tmp_path_factory, meta_weights, sentencepiece_model) -> Path:
    folder = tmp_path_factory.mktemp(f"meta-mp{request.param}") / "llama-2-tiny"
    return write_meta_folder(folder, meta_weights, sentencepiece_model, request.param)


@pytest.fixture()
def meta_copy(tmp_path, meta_weights, sentencepiece_model) -> Path:
    """A two-shard checkpoint a test may modify."""
    return write_meta_folder(tmp_path / "llama-2-tiny", meta_weights, sentencepiece_model, 2)


@pytest.fixture()
def cache(monkeypatch, tmp_path) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NLPIPE_CACHE", str(root))
    return root


def meta_forward(weights: dict[str, torch.Tensor], params: dict, tokens: list[int]) -> torch.Tensor:
    """Logits of Meta's Llama 2 Transformer, written out in float64: the reference to match."""
    w = {name: t.double() for name, t in weights.items()}
    dim, n_heads, n_kv_heads = params["dim"], params["n_heads"], params["n_kv_heads"]
    head_dim, seq_len = dim // n_heads, len(tokens)

    def rms_norm(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + params["norm_eps"]) * weight

    # Rotary embedding as Meta applies it: consecutive pairs of features are complex numbers.
    theta = params.get("rope_theta", 10000.0)
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), freqs)
    rotations = torch.polar(torch.ones_like(angles), angles)[:, None, :]  # (seq, 1, head_dim/2)

    def rotate(x):
        pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2).contiguous())
        return torch.view_as_real(pairs * rotations).flatten(-2)

    causal_mask = torch.full((seq_len, seq_len), float("-inf"), dtype=torch.float64).triu(1)
    h = w["tok_embeddings.weight"][torch.tensor(tokens)]
    for i in range(params["n_layers"]):
        layer = {name[len(f"layers.{i}."):-len(".weight")]: t for name, t in w.items()
                 if name.startswith(f"layers.{i}.")}
        x = rms_norm(h, layer["attention_norm"])
        q = rotate((x @ layer["attention.wq"].T).view(seq_len, n_heads, head_dim))
        k = rotate((x @ layer["attention.wk"].T).view(seq_len, n_kv_heads, head_dim))
        v = (x @ layer["attention.wv"].T).view(seq_len, n_kv_heads, head_dim)
        # Grouped-query attention: each key/value head serves n_heads / n_kv_heads query heads.
        k = k.repeat_interleave(n_heads // n_kv_heads, dim=1)
        v = v.repeat_interleave(n_heads // n_kv_heads, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(head_dim) + causal_mask
        attended = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(seq_len, dim)
        h = h + attended @ layer["attention.wo"].T
        x = rms_norm(h, layer["ffn_norm"])
        gate, up = x @ layer["feed_forward.w1"].T, x @ layer["feed_forward.w3"].T
        h = h + (F.silu(gate) * up) @ layer["feed_forward.w2"].T
    return rms_norm(h, w["norm.weight"]) @ w["output.weight"].T


def hf_logits(model, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].double()


def hf_model(config, state_dict):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(config)
    model.load_state_dict(state_dict, strict=True)
    return model.float().eval()


def _error_code(excinfo) -> str:
    return str(excinfo.value).split(":")[0]


def test_meta_folder_is_meta(meta_dir):
    assert checkpoint_format(meta_dir) == "meta"


@pytest.mark.parametrize("missing", ["params.json", "tokenizer.model", "consolidated.00.pth"])
def test_meta_folder_lacking_a_part_is_not_meta(meta_copy, missing):
    (meta_copy / missing).unlink()
    if missing == "consolidated.00.pth":
        (meta_copy / "consolidated.01.pth").unlink()
    with pytest.raises(ModelError) as caught:
        checkpoint_format(meta_copy)
    assert _error_code(caught) == "E014"
    assert "params.json + consolidated.*.pth + tokenizer.model" in str(caught.value)


def test_config_from_params(meta_dir, sp):
    config, _ = meta_to_hf(meta_dir)
    assert (config.hidden_size, config.num_hidden_layers) == (64, 2)
    assert (config.num_attention_heads, config.num_key_value_heads, config.head_dim) == (4, 2, HEAD_DIM)
    assert config.intermediate_size == FFN_HIDDEN
    assert config.vocab_size == sp.vocab_size()  # params.json says -1
    assert config.rms_norm_eps == 1e-5
    assert config.rope_parameters["rope_theta"] == 10000.0
    assert config.max_position_embeddings == 4096
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 2, None)
    assert not config.tie_word_embeddings


def test_converted_logits_match_meta_forward(meta_dir, meta_weights, sp):
    config, state_dict = meta_to_hf(meta_dir)
    assert "rope.freqs" not in state_dict and len(state_dict) == 3 + 9 * PARAMS["n_layers"]
    tokens = [sp.bos_id()] + sp.encode(TEXT)
    expected = meta_forward(meta_weights, PARAMS, tokens)
    got = hf_logits(hf_model(config, state_dict), tokens)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_reference_notices_a_missing_rotary_permutation(meta_dir, meta_weights, sp):
    # Guards the test above: loading Meta's q/k rows unpermuted must give other logits.
    config, state_dict = meta_to_hf(meta_dir)
    for i in range(PARAMS["n_layers"]):
        for meta, hf in (("wq", "q_proj"), ("wk", "k_proj")):
            unpermuted = meta_weights[f"layers.{i}.attention.{meta}.weight"]
            state_dict[f"model.layers.{i}.self_attn.{hf}.weight"] = unpermuted
    tokens = [sp.bos_id()] + sp.encode(TEXT)
    got = hf_logits(hf_model(config, state_dict), tokens)
    assert (got - meta_forward(meta_weights, PARAMS, tokens)).abs().max() > 1e-2


def test_params_overrides(tmp_path, meta_weights, sentencepiece_model, sp):
    params = {**PARAMS, "vocab_size": sp.vocab_size(), "rope_theta": 500000.0, "max_seq_len": 1024}
    folder = write_meta_folder(tmp_path / "llama", meta_weights, sentencepiece_model, 1, params=params)
    config, state_dict = meta_to_hf(folder)
    assert config.rope_parameters["rope_theta"] == 500000.0
    assert config.max_position_embeddings == 1024
    tokens = [sp.bos_id()] + sp.encode(TEXT)
    torch.testing.assert_close(hf_logits(hf_model(config, state_dict), tokens),
                               meta_forward(meta_weights, params, tokens), atol=1e-4, rtol=1e-4)


def test_load_model_converts_once(meta_dir, meta_weights, sp, cache, monkeypatch):
    calls = []

    def counting_convert(folder, out_dir):
        calls.append(Path(folder))
        return convert_meta(folder, out_dir)

    monkeypatch.setattr(loading, "convert_meta", counting_convert)
    first = load_model(meta_dir, torch.device("cpu"), torch.float32)
    assert calls == [meta_dir]
    assert first.path == meta_cache_dir(meta_dir)
    assert first.path.parent == cache / "meta"
    assert checkpoint_format(first.path) == "hf"

    tokens = first.tokenizer(TEXT)["input_ids"]
    assert tokens == [sp.bos_id()] + sp.encode(TEXT)
    assert first.tokenizer.pad_token is None
    assert not first.tokenizer.chat_template  # a base model: the folder name has no "chat"
    torch.testing.assert_close(hf_logits(first.model, tokens), meta_forward(meta_weights, PARAMS, tokens),
                               atol=1e-4, rtol=1e-4)

    second = load_model(meta_dir, torch.device("cpu"), torch.bfloat16)
    assert calls == [meta_dir]  # the converted folder is reused
    assert second.path == first.path
    assert all(p.dtype == torch.bfloat16 for p in second.model.parameters())


def test_changed_shard_is_converted_again(meta_copy, cache, monkeypatch):
    calls = []

    def fake_convert(folder, out_dir):  # just enough for hf_folder to take the cache as finished
        calls.append(Path(out_dir))
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "config.json").write_text("{}")

    monkeypatch.setattr(loading, "convert_meta", fake_convert)
    first = hf_folder(meta_copy)
    (meta_copy / "README.md").write_text("not part of the checkpoint")
    assert hf_folder(meta_copy) == first
    shard = meta_copy / "consolidated.01.pth"
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # same size, newer
    second = hf_folder(meta_copy)
    assert calls == [first, second] and second != first


def test_chat_folder_gets_the_llama2_chat_format(tmp_path, meta_weights, sentencepiece_model, sp, cache):
    from nlpipe.llm.engine import Llama

    folder = write_meta_folder(tmp_path / "llama-2-tiny-chat", meta_weights, sentencepiece_model, 1)
    llama = Llama(folder, device="cpu", dtype="float32")
    dialog = [{"role": "system", "content": "Answer with a short phrase."},
              {"role": "user", "content": "Who designed the Eiffel Tower?"},
              {"role": "assistant", "content": "Gustave Eiffel"},
              {"role": "user", "content": "Where is it located?"}]
    # Meta's chat_completion: the system prompt joins the first user turn; each turn is encoded on its own.
    system, first = dialog[0]["content"], dialog[1]["content"]
    turns = [{"role": "user", "content": f"<<SYS>>\n{system}\n<</SYS>>\n\n{first}"}, *dialog[2:]]
    expected = []
    for prompt, answer in zip(turns[::2], turns[1::2]):
        exchange = f"[INST] {prompt['content'].strip()} [/INST] {answer['content'].strip()} "
        expected += [sp.bos_id(), *sp.encode(exchange), sp.eos_id()]
    expected += [sp.bos_id(), *sp.encode(f"[INST] {turns[-1]['content'].strip()} [/INST]")]
    assert llama.encode_chat(dialog) == expected
    assert llama.pad_id == sp.eos_id()  # no pad token: the engine pads with eos
    assert len(llama.complete([expected])[0].tokens) > 0


def test_truncated_shard_is_refused(meta_copy, cache):
    shard = meta_copy / "consolidated.01.pth"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ModelError) as caught:
        load_model(meta_copy, torch.device("cpu"), torch.float32)
    assert _error_code(caught) == "E030"
    assert str(shard) in str(caught.value)
    assert not meta_cache_dir(meta_copy).exists()


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_shard_with_code_is_refused_and_not_run(meta_copy, tmp_path, cache, how):
    import pickle

    marker = tmp_path / "code-ran"
    shard = meta_copy / "consolidated.00.pth"
    payload = {"tok_embeddings.weight": torch.zeros(2, 2), "norm.weight": RunsCode(marker)}
    if how == "torch.save":
        torch.save(payload, shard)
    else:
        shard.write_bytes(pickle.dumps(payload))
    with pytest.raises(ModelError) as caught:
        load_model(meta_copy, torch.device("cpu"), torch.float32)
    assert _error_code(caught) == ("E031" if how == "torch.save" else "E030")
    assert str(shard) in str(caught.value)
    assert not marker.exists()
    assert not meta_cache_dir(meta_copy).exists()


def test_missing_middle_shard(meta_copy, cache):
    (meta_copy / "consolidated.01.pth").rename(meta_copy / "consolidated.02.pth")
    with pytest.raises(ModelError, match="^E033.*consolidated.01.pth"):
        meta_to_hf(meta_copy)


def test_params_disagreeing_with_the_weights(meta_copy):
    (meta_copy / "params.json").write_text(json.dumps({**PARAMS, "multiple_of": 256}))
    with pytest.raises(ModelError, match="^E052.*feed_forward.w1.weight"):
        meta_to_hf(meta_copy)


@pytest.mark.parametrize("declared, message", [
    ({"n_layers": 10_000_000}, "n_layers = 10,000,000 but the shards hold 2 layers"),
    ({"dim": 2**40, "n_heads": 4, "n_kv_heads": 2}, r"norm.weight of shape \(1099511627776,\), but the shards hold \(64,\)"),
    ({"vocab_size": 2**40}, r"tok_embeddings.weight of shape \(1099511627776, 64\)"),
])
def test_absurd_params_are_refused_before_anything_is_built(meta_copy, cache, declared, message):
    # Before this check, n_layers = 1e7 built layers for minutes and dim = 2**40 overflowed torch.
    (meta_copy / "params.json").write_text(json.dumps({**PARAMS, **declared}))
    with pytest.raises(ModelError, match=f"^E052.*{message}"):
        hf_folder(meta_copy)
    assert not any(cache.rglob("config.json"))  # nothing cached


@pytest.mark.parametrize("text", ["{ not json", "[1, 2]", json.dumps({"dim": 64, "n_heads": 4}),
                                  json.dumps({**PARAMS, "n_kv_heads": 3}),
                                  json.dumps({**PARAMS, "dim": "64"})])
def test_bad_params_json(meta_copy, text):
    (meta_copy / "params.json").write_text(text)
    with pytest.raises(ModelError, match="^E032"):
        meta_to_hf(meta_copy)


@pytest.mark.parametrize("text", [json.dumps({**PARAMS, "ffn_dim_multiplier": 1e308}),
                                  '{"dim": 64, "n_layers": 2, "n_heads": 4, "ffn_dim_multiplier": NaN}',
                                  json.dumps({**PARAMS, "ffn_dim_multiplier": "x"}),
                                  json.dumps({**PARAMS, "norm_eps": "x"}), json.dumps({**PARAMS, "rope_theta": "abc"}),
                                  json.dumps({**PARAMS, "vocab_size": 1.5}), "[" * 100_000 + "]" * 100_000])
@pytest.mark.parametrize("call", [meta_to_hf, loading.model_config])
def test_params_json_fields_of_the_wrong_type_or_range_are_one_line(meta_copy, text, call):
    (meta_copy / "params.json").write_text(text)
    with pytest.raises(ModelError, match="^E032"):
        call(meta_copy)


def test_tokenizer_that_is_not_sentencepiece(meta_copy):
    # Llama 3's tokenizer.model is a tiktoken file: out of scope, and said so.
    (meta_copy / "tokenizer.model").write_text("IQ== 0\nIg== 1\n")
    with pytest.raises(ModelError, match="^E033.*not a SentencePiece model"):
        meta_to_hf(meta_copy)
