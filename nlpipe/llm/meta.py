"""Convert Meta's own Llama / Llama 2 release (consolidated.NN.pth + params.json + tokenizer.model)
into a Hugging Face folder (config, safetensors, tokenizer).

Merging Meta's model-parallel shards reads every weight; the folder written here loads in well
under a second, so every such checkpoint is converted once and the folder reused.
"""

import json
import math
import pickle
import re
import zipfile
from pathlib import Path

import torch

from ..errors import Errors, ModelError
from ..files import staging_dir
from .cache import cache_dir
from .integrity import numbered_0_to, some_of

META_PARAMS = "params.json"
META_SHARDS = "consolidated.*.pth"
META_TOKENIZER = "tokenizer.model"


def meta_files(folder: Path) -> list[Path]:
    """The files of a Meta checkpoint folder that its conversion reads."""
    return [folder / META_PARAMS, folder / META_TOKENIZER, *sorted(folder.glob(META_SHARDS))]


def meta_cache_dir(folder: Path) -> Path:
    return cache_dir(folder, "meta", meta_files(folder))


# Meta's fairscale layers split each weight across model-parallel ranks along one dimension:
# column-parallel layers by output rows, row-parallel layers by input columns, and the
# ParallelEmbedding by feature columns. Norms are not listed: every rank holds a full copy.
SHARD_DIM = {"wq": 0, "wk": 0, "wv": 0, "w1": 0, "w3": 0, "output": 0,
             "wo": 1, "w2": 1, "tok_embeddings": 1}

TOP_LEVEL_NAMES = {"tok_embeddings.weight": "model.embed_tokens.weight",
                   "norm.weight": "model.norm.weight",
                   "output.weight": "lm_head.weight"}
LAYER_NAMES = {"attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj",
               "attention.wv": "self_attn.v_proj", "attention.wo": "self_attn.o_proj",
               "feed_forward.w1": "mlp.gate_proj", "feed_forward.w2": "mlp.down_proj",
               "feed_forward.w3": "mlp.up_proj",
               "attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
UNUSED_NAMES = {"rope.freqs"}  # HF recomputes the rotary frequencies from rope_theta

# The prompt format of Meta's Llama 2 chat models (their generation.py): a system message is
# folded into the first user turn; every exchange is wrapped in <s>[INST] ... [/INST] ... </s>.
LLAMA2_CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' -%}"
    "{%- set messages = messages[1:] -%}"
    "{%- else -%}{%- set system = '' -%}{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{%- set content = (system + message['content']) if loop.first else message['content'] -%}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{%- else -%}"
    "{{ ' ' + message['content'].strip() + ' ' + eos_token }}"
    "{%- endif -%}"
    "{%- endfor -%}")


def read_params(folder: Path) -> dict:
    """params.json with Meta's ModelArgs defaults filled in."""
    path = folder / META_PARAMS
    try:
        given = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:  # deeply nested JSON: RecursionError
        raise ModelError(Errors.E032.format(path=path, reason=err)) from None
    if not isinstance(given, dict):
        raise ModelError(Errors.E032.format(path=path, reason="expected a JSON object"))
    missing = [key for key in ("dim", "n_layers", "n_heads") if key not in given]
    if missing:
        raise ModelError(Errors.E032.format(path=path, reason=f"missing {', '.join(missing)}"))
    params = {"n_kv_heads": None, "vocab_size": -1, "multiple_of": 256, "ffn_dim_multiplier": None,
              "norm_eps": 1e-5, "rope_theta": 10000.0, "max_seq_len": None, **given}
    if params["n_kv_heads"] is None:
        params["n_kv_heads"] = params["n_heads"]
    counts = ("dim", "n_layers", "n_heads", "n_kv_heads", "multiple_of")
    bad = [key for key in counts if not isinstance(params[key], int) or params[key] <= 0]
    if bad:
        raise ModelError(Errors.E032.format(path=path, reason=f"{', '.join(bad)} must be positive integers"))
    bad = [f"{key} = {params[key]!r}" for key, low, high in (("ffn_dim_multiplier", 0, 1e3), ("norm_eps", 0, 1),
                                                               ("rope_theta", 0, 1e12))
           if not (key == "ffn_dim_multiplier" and params[key] is None) and not _number_in(params[key], low, high)]
    bad += [f"{key} = {params[key]!r}" for key in ("vocab_size", "max_seq_len")
            if params[key] is not None and (isinstance(params[key], bool) or not isinstance(params[key], int)
                                            or not -1 <= params[key] < 2**62)]
    if bad:
        raise ModelError(Errors.E032.format(path=path, reason=f"{', '.join(bad)} is out of range or not a number"))
    if params["dim"] % params["n_heads"] or params["n_heads"] % params["n_kv_heads"]:
        reason = "n_heads must divide dim, and n_kv_heads must divide n_heads"
        raise ModelError(Errors.E032.format(path=path, reason=reason))
    return params


def _number_in(value, low: float, high: float) -> bool:
    """Whether `value` is a finite number with low < value <= high (not a bool, NaN or text)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and low < value <= high)


def ffn_hidden_size(params: dict) -> int:
    """The SwiGLU width as Meta's FeedForward computes it: 2/3 of 4*dim, scaled, rounded up."""
    hidden = int(2 * 4 * params["dim"] / 3)
    if params["ffn_dim_multiplier"] is not None:
        hidden = int(params["ffn_dim_multiplier"] * hidden)
    return params["multiple_of"] * math.ceil(hidden / params["multiple_of"])


def context_length(params: dict) -> int:
    # params.json does not record it. Llama 1, the only release with norm_eps 1e-6, was
    # trained on 2048 tokens; Llama 2 on 4096.
    if params["max_seq_len"]:
        return int(params["max_seq_len"])
    return 2048 if params["norm_eps"] == 1e-6 else 4096


def read_sentencepiece(folder: Path):
    import sentencepiece

    path = folder / META_TOKENIZER
    try:
        return sentencepiece.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as err:
        reason = (f"{path.name} is not a SentencePiece model ({err}); only Llama and Llama 2 "
                  "checkpoints are supported")
        raise ModelError(Errors.E033.format(path=folder, reason=reason)) from None


def load_shard(path: Path) -> dict[str, torch.Tensor]:
    """The tensors in one consolidated.NN.pth, refusing anything but plain tensors."""
    # torch.save writes a zip archive; a file that is not one is truncated or not a checkpoint.
    if not zipfile.is_zipfile(path):
        raise ModelError(Errors.E030.format(
            path=path, reason="not a PyTorch zip archive"))
    try:
        # weights_only: the unpickler builds only tensors and plain containers and never
        # imports or calls anything the file names. mmap: weights are read when used.
        shard = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines()]
        reason = next((line.rstrip(".") for line in lines if "GLOBAL" in line), "it names code to call")
        raise ModelError(Errors.E031.format(path=path, reason=reason)) from None
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0]
        raise ModelError(Errors.E030.format(path=path, reason=reason)) from None
    if not (isinstance(shard, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in shard.items())):
        raise ModelError(Errors.E030.format(path=path, reason="it does not hold a dict of named tensors"))
    return shard


def load_shards(folder: Path) -> list[dict[str, torch.Tensor]]:
    paths = sorted(folder.glob(META_SHARDS))
    if not paths:
        raise ModelError(Errors.E033.format(path=folder, reason=f"no {META_SHARDS} files"))
    expected = [f"consolidated.{rank:02d}.pth" for rank in range(len(paths))]
    if [p.name for p in paths] != expected:
        reason = f"expected shards {', '.join(expected)}; found {', '.join(p.name for p in paths)}"
        raise ModelError(Errors.E033.format(path=folder, reason=reason))
    shards = [load_shard(p) for p in paths]
    for path, shard in zip(paths[1:], shards[1:]):
        if shard.keys() != shards[0].keys():
            reason = f"{path.name} holds other tensors than {paths[0].name}"
            raise ModelError(Errors.E033.format(path=folder, reason=reason))
    return shards


def merge_shards(shards: list[dict[str, torch.Tensor]], folder: Path) -> dict[str, torch.Tensor]:
    """One full tensor per name from Meta's model-parallel shards (one shard: no copy)."""
    if len(shards) == 1:
        return dict(shards[0])
    merged = {}
    for name, first in shards[0].items():
        dim = SHARD_DIM.get(name.split(".")[-2] if "." in name else name)
        try:
            merged[name] = first if dim is None else torch.cat([s[name] for s in shards], dim=dim)
        except RuntimeError:
            shapes = ", ".join(str(tuple(s[name].shape)) for s in shards)
            raise ModelError(Errors.E033.format(
                path=folder, reason=f"the shards' pieces of '{name}' do not fit together: {shapes}")) from None
    return merged


def hf_name(meta_name: str) -> str | None:
    """The Hugging Face Llama name of a Meta weight; None for a name it does not know."""
    if meta_name in TOP_LEVEL_NAMES:
        return TOP_LEVEL_NAMES[meta_name]
    parts = meta_name.split(".")
    if len(parts) < 4 or parts[0] != "layers" or parts[-1] != "weight":
        return None
    module = LAYER_NAMES.get(".".join(parts[2:-1]))
    return f"model.layers.{parts[1]}.{module}.weight" if module else None


def unweave_rotary(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the rows of a q or k projection from Meta's rotary layout to HF's.

    Meta rotates interleaved pairs (rows 2i, 2i+1 of each head); HF's rotate_half pairs row i
    with row i + head_dim/2. Moving every head's even rows before its odd ones maps one to the other.
    """
    rows, cols = weight.shape
    return weight.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def meta_config(params: dict, vocab_size: int, sp, dtype: torch.dtype):
    from transformers import LlamaConfig

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=params["dim"], intermediate_size=ffn_hidden_size(params),
        num_hidden_layers=params["n_layers"], num_attention_heads=params["n_heads"],
        num_key_value_heads=params["n_kv_heads"], rms_norm_eps=params["norm_eps"],
        rope_parameters={"rope_type": "default", "rope_theta": float(params["rope_theta"])},
        max_position_embeddings=context_length(params), tie_word_embeddings=False,
        bos_token_id=sp.bos_id() if sp.bos_id() >= 0 else None,
        eos_token_id=sp.eos_id() if sp.eos_id() >= 0 else None,
        pad_token_id=None, dtype=dtype)
    config.architectures = ["LlamaForCausalLM"]
    return config


def expected_shapes(config) -> dict[str, torch.Size]:
    """Name and shape of every weight a Hugging Face Llama built from `config` has."""
    from transformers import LlamaForCausalLM

    with torch.device("meta"):  # shapes only: no memory, no initialization cost
        model = LlamaForCausalLM(config)
    return {name: tensor.shape for name, tensor in model.state_dict().items()}


def check_meta_sizes(params: dict, vocab_size: int, weights: dict[str, torch.Tensor], folder: Path) -> None:
    """Refuse params.json sizes that the weights do not have, before a model of those sizes is
    built even on the meta device (n_layers = 1e7 takes minutes; dim = 2**40 overflows)."""
    def refuse(reason):
        return ModelError(Errors.E052.format(path=folder / META_PARAMS, reason=reason))

    layers = {int(name.split(".")[1]) for name in weights if re.match(r"layers\.\d+\.", name)}
    if not numbered_0_to(layers, params["n_layers"]):
        raise refuse(f"it declares n_layers = {params['n_layers']:,} but the shards hold {len(layers):,} layers")
    declared = {"norm.weight": (params["dim"],), "tok_embeddings.weight": (vocab_size, params["dim"]),
                "layers.0.feed_forward.w1.weight": (ffn_hidden_size(params), params["dim"])}
    for name, shape in declared.items():
        found = tuple(weights[name].shape) if name in weights else None
        if found != shape:
            raise refuse(f"its dim, vocab_size, multiple_of and ffn_dim_multiplier imply {name} of shape "
                         f"{shape}, but the shards hold {found or 'no such tensor'}")


def meta_to_hf(folder: Path):
    """(LlamaConfig, state dict) of the Meta-format Llama checkpoint in `folder`, in HF's layout."""
    folder = Path(folder)
    params = read_params(folder)
    sp = read_sentencepiece(folder)
    vocab_size = params["vocab_size"] if params["vocab_size"] > 0 else sp.vocab_size()
    meta_weights = merge_shards(load_shards(folder), folder)
    check_meta_sizes(params, vocab_size, meta_weights, folder)
    dtype = meta_weights["tok_embeddings.weight"].dtype
    config = meta_config(params, vocab_size, sp, dtype)
    shapes = expected_shapes(config)

    def fail(reason):
        return ModelError(Errors.E033.format(path=folder, reason=reason))

    hf_weights = {}
    for name, weight in meta_weights.items():
        if name in UNUSED_NAMES:
            continue
        target = hf_name(name)
        if target not in shapes:
            raise fail(f"unexpected tensor '{name}'")
        if weight.shape != shapes[target]:
            raise fail(f"'{name}' has shape {tuple(weight.shape)} but {META_PARAMS} implies "
                       f"{tuple(shapes[target])}")
        if name.endswith("attention.wq.weight"):
            weight = unweave_rotary(weight, params["n_heads"])
        elif name.endswith("attention.wk.weight"):
            weight = unweave_rotary(weight, params["n_kv_heads"])
        hf_weights[target] = weight.contiguous()  # safetensors stores contiguous tensors only
    missing = sorted(shapes.keys() - hf_weights.keys())
    if missing:
        raise fail(f"no weights for {some_of(missing)}")
    return config, hf_weights


def meta_tokenizer(folder: Path, chat: bool):
    """The Llama tokenizer of tokenizer.model; pad stays unset as in Meta's release."""
    from transformers import LlamaTokenizer

    try:
        # Meta's generation code starts every prompt with BOS; HF's Llama tokenizer must be asked to.
        # legacy: Meta encodes the text between special tokens piece by piece, each with
        # SentencePiece's leading "▁"; legacy=False would drop it after <s> and </s>.
        tokenizer = LlamaTokenizer.from_pretrained(folder, add_bos_token=True, legacy=True,
                                                   local_files_only=True, trust_remote_code=False)
    except Exception as err:  # transformers raises many types for a bad file
        raise ModelError(Errors.E015.format(path=folder / META_TOKENIZER, reason=err)) from err
    tokenizer.init_kwargs["legacy"] = True  # else not saved, and the reloaded tokenizer drops the "▁"
    if chat:
        tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE
    return tokenizer


def convert_meta(folder: Path, out_dir: Path) -> Path:
    """Write the Meta-format checkpoint in `folder` as a Hugging Face folder at `out_dir`."""
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    folder = Path(folder)
    config, state_dict = meta_to_hf(folder)
    # Base and chat releases share params.json; only Meta's folder names (llama-2-7b-chat) tell.
    tokenizer = meta_tokenizer(folder, chat="chat" in folder.resolve().name.lower())
    with staging_dir(out_dir) as tmp_dir:
        config.save_pretrained(tmp_dir)
        GenerationConfig.from_model_config(config).save_pretrained(tmp_dir)
        save_file(state_dict, str(tmp_dir / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp_dir)
    return Path(out_dir)
