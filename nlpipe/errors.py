"""Every message a user can see, named once (spaCy's errors.py habit).

Library code raises the exception classes below with these messages (and warns with
NlpipeWarning and a Warnings message); only the CLI turns them into one line and an exit code.
"""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message, for a one-line error; its type's name when the
    message is empty (a MemoryError has none), so that formatting an error never fails itself."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


class NlpipeError(Exception):
    """An error the user can fix; `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(NlpipeError):
    exit_code = 2


class ModelError(NlpipeError):
    exit_code = 2


class DeviceError(NlpipeError):
    exit_code = 2


class InputError(NlpipeError):
    exit_code = 2


class DiskFullError(NlpipeError):
    exit_code = 74  # EX_IOERR of sysexits.h: an input/output error, not a failed document


class ClosedPipeError(NlpipeError):
    exit_code = 141  # 128 + SIGPIPE: what a shell reports for a tool whose reader went away


class EngineError(NlpipeError):
    """The Ray engine cannot run: Ray missing, the cluster unreachable or too small."""

    exit_code = 2


class NlpipeWarning(UserWarning):
    """Something the user should know that does not stop the run; the CLI shows it as one line."""


class Warnings:
    W001 = ("W001: the span selector's shipped weights and reader were fitted for {fitted}, not for the model "
            "'{model}': answering with the shipped weights fitted without a reader ({fallback}), which still weigh "
            "that model's likelihoods, so answers and confidences may be poor. Train a reader for this model with "
            "`nlpipe train SQUAD-FILE... --model {model} --output DIR`, then fit weights with `nlpipe fit "
            "SQUAD-FILE... --model {model} --components.llama_qa.reader.path DIR --output W.json` and set "
            "[components.llama_qa.selector] weights_file = W.json (and reader path = DIR).")

    W002 = ("W002: the reader '{reader}' was trained on this data and has no cross-validation heads (folds/), so "
            "it reads these questions in-sample and the weights will trust it more than it earns on new text. "
            "Train the reader with `nlpipe train SQUAD-FILE... --output DIR` (it keeps a head per fold) and fit "
            "with --components.llama_qa.reader.path DIR, or fit on data the reader was not trained on.")


class Errors:
    E001 = ("E001: config file '{path}' not found. Pass a config file or the name of a built-in "
            "pipeline ({builtin}).")
    E002 = "E002: config problem in [{section}] {key}: {message}"
    E003 = ("E003: unknown key '{key}' in the [nlpipe] section. Known keys: {known}.")
    E004 = ("E004: spaCy model '{name}' is not installed. Install it with "
            "`pip install {package}` or `nlpipe models pull {name}`.")
    E005 = ("E005: spaCy model '{name}' is not installed and nlpipe knows no package for it. "
            "Install it with pip, or point the config at a pipeline folder.")
    E006 = "E006: no input given. Pass --input PATH (a folder, a .jsonl file or - for stdin) or set [nlpipe] input."
    E007 = "E007: no output given. Pass --output FILE (or - for stdout) or set [nlpipe] output."
    E008 = "E008: input '{path}' does not exist."
    E027 = ("E027: input '{path}' is {kind}, not a regular file or a folder: nlpipe would wait or read "
            "forever. Pass a file or a folder, or pipe a stream in with --input -.")
    E009 = "E009: questions file '{path}' cannot be read: {reason}"
    E010 = ("E010: device '{device}' was requested but {reason}. Set device = \"auto\" "
            "(or \"cpu\") in the config, e.g. --components.llama_qa.model.device auto.")
    E011 = "E011: unknown device '{device}'. Use auto, cpu, cuda, cuda:N or mps."
    E012 = "E012: unknown dtype '{dtype}'. Use auto, float32, bfloat16 or float16."
    # No fetch hint: a known model's name is fetched on first use, so a path that is missing is a typo.
    E013 = ("E013: model path '{path}' does not exist. Check the path, or set [components.llama_qa.model] "
            "path to a model folder, a .gguf file or a model name from `nlpipe models list`.")
    E014 = ("E014: '{path}' is not a model nlpipe can load: expected a Hugging Face folder "
            "(config.json + *.safetensors or *.bin + tokenizer files), a .gguf file, or a Meta "
            "Llama checkpoint folder (params.json + consolidated.*.pth + tokenizer.model).")
    E015 = "E015: could not load the model at '{path}': {reason}"
    E016 = "E016: unknown model '{name}'. Known models: {known}."
    E017 = "E017: fetching '{name}' failed: {reason}"
    E018 = ("E018: the prompt has {n_tokens} tokens and needs {max_new} more, but the model's context "
            "window is {context} tokens. Shorten the question, or lower [components.llama_qa.model] "
            "max_new_tokens.")
    E019 = ("E019: the model has no chat template and no pad/eos token; nlpipe needs an "
            "instruction-tuned model with a chat template.")
    E020 = "E020: config file '{path}' cannot be parsed: {reason}"
    E021 = ("E021: ran out of {device} memory running the model on one prompt alone: {reason}. Lower "
            "[components.llama_qa.model] max_batch_tokens, or use a smaller dtype or model.")
    E022 = "E022: cannot read SQuAD file '{path}': {reason}"
    E023 = "E023: cannot write output '{path}': {reason}. Pass --output with a writable file path."
    E030 = ("E030: cannot read the Meta checkpoint shard '{path}': {reason}. The file may be "
            "truncated or corrupt; download it again and check it against checklist.chk.")
    E031 = ("E031: refused to load '{path}': it holds more than tensors, and unpickling it could "
            "run code ({reason}). Use checkpoint files only from a source you trust.")
    E032 = "E032: cannot use '{path}' as Meta Llama params.json: {reason}."
    E033 = "E033: cannot convert the Meta Llama checkpoint at '{path}': {reason}."
    E026 = ('E026: line {line}: "id" is {value}, not a string; nlpipe does not convert ids (123 and "123", or '
            'null and "None", would name one document). Write it as a string, or leave "id" out to name the '
            'document by its line.')
    E024 = ("E024: the chat template of the model at '{path}' failed: {reason}. Check or replace "
            "chat_template in its tokenizer_config.json / chat_template.jinja.")
    E040 = ("E040: line {line} of the output '{path}' is not a complete nlpipe record ({reason}); nothing "
            "was changed. Repair or remove that line, or pass --overwrite to start the output afresh.")
    E041 = ("E041: '{path}' exists and is not an nlpipe output (line {line}: {reason}); it was left as it "
            "is. Choose another --output, or pass --overwrite to replace it.")
    E042 = ("E042: the output '{path}' is the {role} '{other}'; writing it would destroy that file. "
            "Choose another --output.")
    E043 = ("E043: another nlpipe run is writing '{path}' (it holds {lock}). Wait for it to finish, or "
            "choose another --output.")
    E044 = ("E044: '{path}' was written with a different pipeline config (fingerprint {old}, now {new}). "
            "Pass --append to keep its records and add the rest with this config, or --overwrite to "
            "start afresh.")
    E045 = ("E045: the questions file '{path}' holds no questions, so there is nothing to answer. Put one "
            "question per line in it.")
    E046 = ("E046: the pipeline answers questions but none were given, so there is nothing to answer. "
            "Pass --questions FILE, or set questions in [components.{component}].")
    E047 = "E047: --overwrite and --append contradict each other; pass one of them."
    E048 = ("E048: no document had a question, so nothing was answered (the records in '{path}' have no "
            "answers). Pass --questions FILE, or give each JSONL record a \"questions\" list.")
    E049 = ("E049: '{lock}', where a run on '{path}' takes its lock, is not an nlpipe lock file; it was left "
            "as it is and nothing was written. Move it away if it is yours, or choose another --output.")
    E090 = "E090: cannot read '{path}': {reason}."
    E091 = ("E091: line {line} of '{path}' cannot become a Doc: {reason}. A report or DocBin needs the "
            "records of `nlpipe run ... --annotations` (or an output ending in .spacy).")
    E092 = ("E092: cannot report on '{path}': expected a .spacy file, a .jsonl output written with "
            "--annotations, or a pipeline config (a .cfg file or a built-in name such as qa) with --input.")
    E093 = ("E093: '{path}' exists but its records file '{records}' does not, so it was not written by "
            "nlpipe run (or the records were deleted); it was left as it is. Pass --overwrite to replace "
            "it, or choose another --output.")
    E094 = ("E094: cannot write '{path}': an HTML report is written by `nlpipe report`. Give --output a "
            "name ending in .jsonl (records) or .spacy (a spaCy DocBin).")
    E095 = "E095: the report output must end in .html or .htm, not '{path}'."
    E096 = "E096: cannot write the report '{path}': {reason}."
    E097 = ("E097: no Chromium found (looked for chromium, chromium-browser, google-chrome on PATH). "
            "Install it, e.g. `apt-get install chromium`.")
    E098 = "E098: headless Chromium failed on {url}: {reason}"
    E060 = "E060: config problem in [{section}]: {message}"
    E080 = "E080: empty prompt or continuation: the model needs at least one token of each."
    E081 = ("E081: doc._.questions must be a list of question strings, not {kind}. Set it to e.g. "
            "[\"Who designed it?\"].")
    E082 = ("E082: '{name}' is retired: it {why}. Use '{successor}' instead, e.g. "
            "[components.llama_qa.selector] @misc = \"{successor}\".")
    E083 = "E083: cannot read selector weights '{path}': {reason}. Write one with `nlpipe fit`."
    E084 = "E084: [components.llama_qa.{section}] {key}: {message}"
    E086 = ("E086: cannot read the reader '{path}': {reason}. Train one with `nlpipe train SQUAD-FILE... "
            "--output DIR`, or use the shipped one (path = \"smollm2-135m\").")
    E087 = ("E087: the reader '{path}' does not fit the model '{model}': {why}. Train a reader for it with "
            "`nlpipe train SQUAD-FILE... --output DIR --model {model}` and set [components.llama_qa.reader] "
            "path = DIR, or use mode = \"grounded\".")
    E088 = "E088: nothing to train on in {files}: {reason}."
    E089 = ("E089: --output '{path}' exists and is not a reader folder: give a new folder (nlpipe train "
            "writes reader.json and reader.pt into it).")
    E085 = "E085: [components.llama_qa] {key} = {value}: {message}"
    E050 = ("E050: cannot write: {reason}. Free some space and run the same "
            "command again: a run resumes after its last complete record.")
    E051 = ("E051: the output pipe was closed before the run finished (whatever read stdout exited). "
            "Pass --output FILE to keep every record.")
    E052 = ("E052: refused the model file '{path}': {reason}. It is damaged or not a whole "
            "model; download it again.")
    E053 = ("E053: the model at '{path}' has no weights for {names}; nlpipe does not run (or cache) a "
            "model with randomly initialised parts. Download it again.")
    E054 = ("E054: refused the model at '{path}': its config.json has an auto_map, which names Python code "
            "shipped with the model, and nlpipe does not run a model's own code. Use a model whose "
            "architecture transformers has built in (such as Llama).")
    # The requirement is setup.cfg's [ray] extra, spelled out: "nlpipe[ray]" would name PyPI's
    # unrelated nlpipe project, and nlpipe's own distribution (nlpipe-qa) is not on PyPI.
    E055 = ("E055: cannot write the output {output}: it is {kind}, not a regular file, and refused the data "
            "({reason}). Pass --output with a regular file.")
    E056 = ("E056: the model's config '{path}' does not give its context window (max_position_embeddings), "
            "and transformers would fill in a default that need not be the model's. Add "
            "\"max_position_embeddings\": N to it, N being the context length the model was trained with "
            "(its model card says).")
    E070 = ('E070: --engine ray needs Ray Data, which is not installed. Install it with '
            '`pip install "ray[data]>=2.40"`, or run with --engine local.')
    E071 = ("E071: cannot start or join Ray at {address}: {reason}. Check --ray-address / RAY_ADDRESS, "
            "or leave both unset to start a local Ray.")
    E072 = ("E072: {workers} worker(s) x {gpus} GPU(s) each need {needed} GPU(s) but the Ray cluster has "
            "{available}. Lower --workers or --gpus-per-worker (0 runs on CPU).")
    E073 = "E073: a Ray worker failed to build the pipeline: {reason}"
    E074 = ("E074: the Ray address '{address}' is not HOST:PORT with a port from 1 to 65535. Give the Ray head's "
            "address (such as 10.0.0.5:6379) with --ray-address / RAY_ADDRESS, or leave both unset to start a "
            "local Ray.")
    E075 = ("E075: nothing answers at the Ray address {address} ({reason}). Check the address (--ray-address / "
            "RAY_ADDRESS: the head's host and GCS port, 6379 by default) and that `ray start --head` runs there, "
            "or leave both unset to start a local Ray.")
    E101 = ("E101: the pipeline of {config} has no llama_qa component, so {what}. Use a config with one (the "
            "built-in qa, or add a [components.llama_qa] block).")
    E102 = ("E102: no answerable question has a candidate span matching its answer: nothing to fit (are the "
            "references spans of their paragraphs?)")
    E103 = ("E103: --tune-layers {tuned} is more layers than the model '{model}' has ({n_layers}). Tune "
            "fewer (the shipped reader tunes 5 of SmolLM2-135M's 30).")
    E104 = ("E104: --verifier-only adds a verifier to a trained reader, and '{path}' holds none (no reader.json). "
            "Give the folder nlpipe train wrote, or leave --verifier-only out to train the reader first.")
