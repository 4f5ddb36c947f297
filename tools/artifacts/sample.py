"""Generate text from a checkpoint or artifact, to see what the model learned.

    python -m tools sample MODEL (--data DIR | --tokenizer PATH) --prompt "To be" [--tokens 100]
                           [--temperature 0.8] [--top-k 40] [--seed 0] [--context N] [--compare-random] [--json]

The prompt is encoded with the dataset's tokenizer after a BOS (every training document starts with one).
--temperature 0 is greedy. --compare-random also samples from an untrained model of the same shape (GPT(config)
initialised with --seed) and prints both models' mean loss (nats per token) on the prompt's tokens.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

import torch

import train_gpt as tg
from tools import common as C
from tools.artifacts import model_file as M
from tools.common import ToolError


@torch.no_grad()
def generate(model, ids: list[int], tokens: int, temperature: float, top_k: int, seed: int, context: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    out = list(ids)
    for _ in range(tokens):
        x = torch.tensor([out[-context:]], dtype=torch.long)
        logits = model.logits(model.hidden(x))[0, -1].float()
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            logits = logits / temperature
            if 0 < top_k < logits.numel():
                kth = torch.topk(logits, top_k).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen))
        out.append(nxt)
    return out[len(ids):]


@torch.no_grad()
def prompt_loss(model, ids: list[int], context: int) -> float:
    """Mean next-token loss (nats) over the prompt's tokens after BOS (the last `context` + 1 of them)."""
    window = torch.tensor([ids[-(context + 1):]], dtype=torch.long)
    return float(model(window[:, :-1], window[:, 1:]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("model", help="artifact, training .ckpt or raw-weights .safetensors")
    p.add_argument("--data", default=None, help="dataset directory (its manifest names the tokenizer)")
    p.add_argument("--tokenizer", default="", help="tokenizer path (.model or pure-byte .json)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--tokens", type=int, default=100, help="tokens to generate (default 100)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=40, help="0 = no top-k")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--context", type=int, default=1024, help="longest context fed to the model (default 1024)")
    p.add_argument("--compare-random", action="store_true", help="also sample from an untrained model of the same shape")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.tokens < 0 or args.context <= 0 or not 0 <= args.temperature < math.inf or args.top_k < 0:
        raise ToolError("need --tokens >= 0, --context > 0, --temperature a finite number >= 0 and --top-k >= 0")
    if not args.data and not args.tokenizer:
        raise ToolError("give --data DIR or --tokenizer PATH")
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    model, config, _ = M.load_model(args.model)
    tok = tg.load_tokenizer(tg.resolve_tokenizer_path(args.data or ".", args.tokenizer))
    if tok.vocab_size != config["vocab_size"]:
        raise ToolError(f"the tokenizer has {tok.vocab_size} tokens but the model's vocab_size is {config['vocab_size']}")
    prompt_ids = tok.encode(args.prompt)
    if not prompt_ids:
        raise ToolError("the prompt encodes to no tokens")
    ids = [tok.bos_id if tok.bos_id >= 0 else config.get("bos_id", 1)] + prompt_ids
    models = [("trained", model)]
    if args.compare_random:
        torch.manual_seed(args.seed)
        models.append(("random", tg.GPT(tg.ModelConfig(**config)).eval()))
    results = []
    for label, m in models:
        out = generate(m, ids, args.tokens, args.temperature, args.top_k, args.seed, args.context)
        results.append({"model": label, "prompt_loss": prompt_loss(m, ids, args.context), "text": tok.decode(out),
                        "tokens": out})
    if args.json:
        print(json.dumps({"prompt": args.prompt, "prompt_tokens": len(prompt_ids), "results": results}, indent=1))
        return 0
    for r in results:
        print(f"=== {r['model']} model: loss on the prompt {r['prompt_loss']:.4f} nats/token over {len(prompt_ids)} tokens")
        print(args.prompt + r["text"])
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
