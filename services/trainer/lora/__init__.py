"""LoRA finetuning of one agent: chat examples in, a PEFT adapter folder out.

`config` (hyperparameters, plain dataclasses: no torch), `chat_encoding` (loss on assistant
tokens), `batching` (length-grouped batches), `runtime` (device, dtype, threads), `loop`
(`train_lora`, the optimisation loop).
"""
