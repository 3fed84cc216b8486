#!/usr/bin/env python3
"""Hugging Face transformers' generate on a model directory: greedy decode speed at batch 1.

The peer figure for kvc_bench_cuda (scripts/bench cuda), which runs this with the python3 that
has torch and transformers, on the same weights. Prints one JSON object:
  {"decode_tok_s": ..., "device": ..., "torch": ..., "transformers": ...}
Decode time per token is (time to generate N + 1 tokens - time to generate 1) / N from a
random prompt, so the prompt's prefill is left out; the best of --runs is reported.
"""
import argparse
import json
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Hugging Face model directory")
    parser.add_argument("--prompt-len", type=int, default=128, help="prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=128, help="tokens to generate")
    parser.add_argument("--runs", type=int, default=3, help="timed runs; the best is reported")
    args = parser.parse_args()

    import torch
    import transformers

    if not torch.cuda.is_available():
        print(json.dumps({"error": "torch sees no CUDA device"}))
        return 2
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model,
                                                                  dtype=torch.bfloat16)
    except TypeError:  # transformers before the dtype argument
        model = transformers.AutoModelForCausalLM.from_pretrained(args.model,
                                                                  torch_dtype=torch.bfloat16)
    model = model.to("cuda").eval()
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.config.vocab_size, (1, args.prompt_len),
                           generator=generator).to("cuda")

    def generate(new_tokens):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt),
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 do_sample=False, pad_token_id=0)
        torch.cuda.synchronize()
        return time.perf_counter() - start, out.shape[1] - prompt.shape[1]

    generate(8)  # warm-up: kernels, allocator
    best = None
    for _ in range(args.runs):
        long_s, long_n = generate(args.new_tokens + 1)
        short_s, short_n = generate(1)
        per_token = (long_s - short_s) / max(1, long_n - short_n)
        best = per_token if best is None else min(best, per_token)
    print(json.dumps({"decode_tok_s": 1.0 / best, "device": torch.cuda.get_device_name(),
                      "torch": torch.__version__, "transformers": transformers.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
