"""A random-weight model with the architecture (optionally reshaped) and tokenizer of a model
folder, for throughput measurements where the real weights cannot travel (e.g. to a GPU box with
no network). Compute per token depends on the shapes, not on the weights' values.

    python bench/random_model.py SRC DEST [--hidden 2048 --intermediate 8192 --layers 24
                                           --heads 32 --kv-heads 32]

SmolLM2-1.7B-Instruct's shapes are the example above (SmolLM2-135M's tokenizer and vocabulary).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                   "special_tokens_map.json", "generation_config.json")
SHAPES = {"hidden": "hidden_size", "intermediate": "intermediate_size",
          "layers": "num_hidden_layers", "heads": "num_attention_heads",
          "kv_heads": "num_key_value_heads"}


def build(src: Path, dest: Path, shapes: dict[str, int | None]) -> int:
    """Write the model to `dest`; its parameter count."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(src)
    for flag, key in SHAPES.items():
        if shapes.get(flag):
            setattr(config, key, shapes[flag])
    config.head_dim = config.hidden_size // config.num_attention_heads
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(dest)
    for name in TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy(src / name, dest / name)
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("src", type=Path, help="model folder with config.json and the tokenizer")
    p.add_argument("dest", type=Path)
    for flag in SHAPES:
        p.add_argument(f"--{flag.replace('_', '-')}", type=int)
    args = p.parse_args()
    count = build(args.src, args.dest, {f: getattr(args, f) for f in SHAPES})
    print(f"{args.dest}: {count / 1e6:.0f} M parameters (random, bf16)")


if __name__ == "__main__":
    main()
