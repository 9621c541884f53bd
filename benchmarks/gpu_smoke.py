"""GPU check: the default model on CUDA generates what it generates on the CPU, and how fast.

    python benchmarks/gpu_smoke.py [--model models/smollm2-135m] [--batch 16] [--new-tokens 64]

Greedy output on CUDA in float32 must equal the CPU's token for token (same arithmetic up to
rounding); bf16 rounds differently, so for it the share of identical rows is reported instead.
Prints tokens/s for each run. Exits 2 with a message when there is no CUDA device.
"""

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nlpipe.llm.engine import Llama  # noqa: E402

QUESTIONS = ["Where is the Eiffel Tower?", "Who designed the Sydney Opera House?", "When did Super Bowl 50 take place?",
             "What is the capital of Australia?", "How tall is the Empire State Building?", "Who wrote Hamlet?",
             "What is photosynthesis?", "Name three primary colours."]


def run(llm: Llama, prompts: list[list[int]]) -> tuple[list[list[int]], float]:
    llm.complete(prompts[:1])  # warm-up: CUDA context, kernels
    if llm.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    completions = llm.complete(prompts)
    if llm.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = [c.tokens for c in completions]
    return tokens, sum(len(t) for t in tokens) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/smollm2-135m")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: run this on a GPU machine", file=sys.stderr)
        return 2
    settings = dict(max_new_tokens=args.new_tokens, temperature=0.0)
    cpu = Llama(args.model, device="cpu", dtype="float32", **settings)
    prompts = [cpu.encode_chat([{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}])
               for i in range(args.batch)]
    cpu_tokens, cpu_rate = run(cpu, prompts)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, batch {args.batch}, {args.new_tokens} new tokens")
    print(f"cpu  float32   {cpu_rate:9.1f} tokens/s")
    failed = False
    for dtype in ("float32", "bfloat16"):
        gpu = Llama(args.model, device="cuda", dtype=dtype, **settings)
        gpu_tokens, gpu_rate = run(gpu, prompts)
        same = sum(a == b for a, b in zip(gpu_tokens, cpu_tokens))
        print(f"cuda {dtype:9s} {gpu_rate:9.1f} tokens/s  ({gpu_rate / cpu_rate:.1f}x cpu)  "
              f"rows identical to cpu: {same}/{len(prompts)}")
        failed |= dtype == "float32" and same != len(prompts)
        del gpu
        torch.cuda.empty_cache()
    print("FAIL: float32 CUDA output differs from CPU" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
