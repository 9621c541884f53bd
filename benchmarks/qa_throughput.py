"""QA throughput: nlpipe against the obvious baseline, same model, same machine, same run.

    python benchmarks/qa_throughput.py [--docs 8] [--device cpu|cuda]

The baseline is what a user would write: spaCy's nlp.pipe over the texts, then Hugging Face
`model.generate` once per (document, question) with a plain prompt. nlpipe runs
pipelines/qa.cfg (grounded mode unless --mode says otherwise). Both answer the same SQuAD paragraphs; printed: questions/s,
F1 against the references, and nlpipe's speed ratio, for 5 questions and 1 question per document.
"model tok/s" counts every token position the model ran (prompt, generated or scored tokens,
padding included), so it says how busy each approach kept the hardware.
"""

import argparse
import time

import torch
from _common import qa_pipeline, require_squad

from nlpipe.metrics import f1_score
from nlpipe.processing import process
from nlpipe.squad import read_squad


def workload(questions_per_doc: int, n_docs: int):
    """(context, [(question, references)]) for the first paragraphs with enough questions."""
    docs = []
    for paragraph in read_squad(require_squad()):
        if len(paragraph.questions) >= questions_per_doc:
            docs.append((paragraph.context, [(q, refs) for _, q, refs in paragraph.questions[:questions_per_doc]]))
        if len(docs) == n_docs:
            break
    return docs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class TokenCounter:
    """Counts the token positions of every forward call of `model` while active."""

    def __init__(self, model):
        self.model, self.tokens = model, 0

    def __enter__(self):
        def count(module, args, kwargs):
            self.tokens += (kwargs.get("input_ids") if "input_ids" in kwargs else args[0]).numel()
        self.handle = self.model.register_forward_pre_hook(count, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def run_baseline(nlp, llm, docs) -> tuple[float, list[str]]:
    """spaCy over the texts, then one generate() per (document, question)."""
    model, tokenizer = llm.model, llm.tokenizer
    started = time.perf_counter()
    spacy_docs = list(nlp.pipe([context for context, _ in docs], disable=["llama_qa"]))
    answers = []
    for doc, (_, qas) in zip(spacy_docs, docs):
        for question, _ in qas:
            messages = [{"role": "user", "content": f"Context: {doc.text}\nQuestion: {question}\nAnswer briefly."}]
            inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                   return_dict=True).to(model.device)
            output = model.generate(**inputs, max_new_tokens=llm.max_new_tokens, do_sample=False,
                                    pad_token_id=llm.pad_id)
            generated = output[0, inputs["input_ids"].shape[1]:]
            answers.append(tokenizer.decode(generated, skip_special_tokens=True).strip())
    sync(model.device)
    return time.perf_counter() - started, answers


def run_nlpipe(nlp, docs) -> tuple[float, list[str]]:
    llm = nlp.get_pipe("llama_qa").llm
    started = time.perf_counter()
    items = [(context, [q for q, _ in qas], None) for context, qas in docs]
    answers = [answer["text"] for doc, _ in process(nlp, items, batch_size=len(items)) for answer in doc._.answers]
    sync(llm.device)
    return time.perf_counter() - started, answers


def mean_f1(answers: list[str], docs) -> float:
    references = [refs for _, qas in docs for _, refs in qas]
    return 100 * sum(max(f1_score(a, r) for r in refs) for a, refs in zip(answers, references)) / len(references)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=8, help="documents per setting")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (the GPU variant, bf16)")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on CUDA and on CPUs with native bf16), float32, "
                                                        "bfloat16")
    parser.add_argument("--mode", help="llama_qa mode (default: the config's, grounded): grounded or reader")
    args = parser.parse_args()
    overrides = {"components.llama_qa.model.device": args.device, "components.llama_qa.model.dtype": args.dtype}
    if args.mode:
        overrides["components.llama_qa.mode"] = args.mode
    nlp = qa_pipeline(overrides)
    dtype = str(nlp.get_pipe("llama_qa").llm.model.dtype).removeprefix("torch.")
    llm = nlp.get_pipe("llama_qa").llm
    print(f"device {llm.device}, dtype {dtype}, {torch.get_num_threads()} torch threads, "
          f"max_new_tokens {llm.max_new_tokens}")
    print(f"{'questions/doc':>13} {'questions':>9} {'baseline q/s':>12} {'nlpipe q/s':>10} {'speed-up':>8} "
          f"{'baseline F1':>11} {'nlpipe F1':>9} {'baseline model tok/s':>14} {'nlpipe model tok/s':>12}")
    run_nlpipe(nlp, workload(1, 1))  # warm-up: first-call costs are not throughput
    for per_doc in (5, 1):
        docs = workload(per_doc, args.docs if per_doc > 1 else args.docs * 2)
        n_questions = sum(len(qas) for _, qas in docs)
        with TokenCounter(llm.model) as base_count:
            base_s, base_answers = run_baseline(nlp, llm, docs)
        with TokenCounter(llm.model) as our_count:
            ours_s, our_answers = run_nlpipe(nlp, docs)
        print(f"{per_doc:>13} {n_questions:>9} {n_questions / base_s:>12.2f} {n_questions / ours_s:>10.2f} "
              f"{base_s / ours_s:>7.1f}x {mean_f1(base_answers, docs):>11.1f} {mean_f1(our_answers, docs):>9.1f} "
              f"{base_count.tokens / base_s:>14.1f} {our_count.tokens / ours_s:>12.1f}")


if __name__ == "__main__":
    main()
