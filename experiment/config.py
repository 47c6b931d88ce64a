"""What an experiment is (ExperimentConfig: everything that decides its numbers) and where it runs
(Runtime: server, store, devices; may change when a run is resumed)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from experiment.methods import ALL_METHODS, SPECS, MethodSpec
from maft.curation import CurationConfig, LossOn, Majority
from maft.debate import DebateConfig
from maft.inference_client import Sampling
from maft.settings import DEFAULT_BASE_MODEL_NAME, DEFAULT_MAX_LORA_RANK
from services.trainer.lora.config import LoraConfigSpec, TrainConfig

_LORA, _TRAIN = LoraConfigSpec(), TrainConfig()  # one source for the trainer's defaults

DEFAULT_TASK_OPTIONS: dict[str, Any] = {"terms": 2, "pattern": "+", "low": 0, "high": 30}
# Where train labels come from: the debate's vote (the paper: unsupervised), the reference
# answer of every train question, or the reference as feedback on a share of them (the rest vote).
LABELS = ("vote", "reference", "feedback")


@dataclass(frozen=True)
class TrainingConfig:
    """LoRA and optimiser settings for every adapter the experiment trains."""

    rank: int = _LORA.rank
    alpha: int = _LORA.alpha
    learning_rate: float = _TRAIN.learning_rate
    epochs: int = _TRAIN.epochs
    batch_size: int = _TRAIN.batch_size
    max_seq_len: int = _TRAIN.max_seq_len
    dtype: str = _TRAIN.dtype  # "auto": bf16 only where native (see training_config)
    max_steps: int | None = None
    min_steps: int = _TRAIN.min_steps  # repeat epochs of a small dataset up to this many steps
    max_epochs: int = _TRAIN.max_epochs  # ... but at most this many passes

    def __post_init__(self) -> None:
        self.train_config(seed=0)  # the trainer's own checks, before any debate runs

    def train_config(self, seed: int) -> TrainConfig:
        """The trainer's config for one adapter (seeded per adapter)."""
        return TrainConfig(lora=LoraConfigSpec(rank=self.rank, alpha=self.alpha),
                           learning_rate=self.learning_rate, epochs=self.epochs,
                           batch_size=self.batch_size, max_seq_len=self.max_seq_len, seed=seed,
                           dtype=self.dtype, max_steps=self.max_steps, min_steps=self.min_steps,
                           max_epochs=self.max_epochs)


@dataclass(frozen=True)
class ExperimentConfig:
    """The protocol: task, splits, methods, debate shape, sampling, curation, training, seeds."""

    task: str = "arithmetic"
    task_options: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_TASK_OPTIONS))
    train_size: int = 100
    test_size: int = 100
    train_seed: int = 1
    test_seed: int = 2
    iterations: int = 2
    methods: tuple[str, ...] = ("base", "majority", "debate", "single_ft", "maft")
    agents: int = 3
    rounds: int = 2
    summarize: bool = False
    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 256
    sampling_extra: dict[str, Any] = field(default_factory=dict)
    w: float = 2 / 3
    min_consensus: float = 0.0
    labels: str = "vote"  # one of LABELS
    feedback_share: float = 0.0  # labels="feedback": share of train questions with feedback
    majority: str = "strict"  # a vote labels only with more than half the agents ("plurality")
    critic_loss: str = "all_assistant"  # or "final": which critic turns carry loss
    seed: int = 0
    training: TrainingConfig = field(default_factory=TrainingConfig)
    diversity_questions: int = 30
    nll: bool = True
    embeddings: bool = True

    def __post_init__(self) -> None:
        unknown = set(self.methods) - set(ALL_METHODS)
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; known: {', '.join(ALL_METHODS)}")
        if "maft_wo_summary" in self.methods and not self.summarize:
            raise ValueError("maft_wo_summary is MAFT without the summarizer: it equals maft "
                             "unless the main debate summarises (--summarize)")
        if self.iterations < 0 or self.train_size < 1 or self.test_size < 1:
            raise ValueError("iterations must be >= 0 and the splits non-empty")
        DebateConfig(agents=self.agents, rounds=self.rounds)  # validates the shape
        self._check_labels()

    def _check_labels(self) -> None:
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {', '.join(LABELS)}")
        if not 0.0 <= self.feedback_share <= 1.0:
            raise ValueError("feedback_share must be between 0 and 1")
        if self.feedback_share and self.labels != "feedback":
            raise ValueError("feedback_share needs labels='feedback'")
        self.curation(supervised=False)  # curation's own checks (w, min_consensus, ...)

    def curation(self, *, supervised: bool) -> CurationConfig:
        """The product's curation settings of this run; `supervised`: feedback and reference
        answers, where a debate carries them, label it instead of its vote."""
        return CurationConfig(w=self.w, use_ground_truth=supervised,
                              min_consensus=self.min_consensus,
                              critic_loss=cast(LossOn, self.critic_loss),
                              majority=cast(Majority, self.majority), seed=self.seed)

    @property
    def sampling(self) -> Sampling:
        """Sampling of every model call."""
        return Sampling(temperature=self.temperature, top_p=self.top_p,
                        max_tokens=self.max_tokens, extra=dict(self.sampling_extra))

    def specs(self) -> list[MethodSpec]:
        """The selected methods, in the canonical (table) order."""
        return [SPECS[m] for m in ALL_METHODS if m in self.methods]

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExperimentConfig:
        """Inverse of to_json; keys added since a run started take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["methods"] = tuple(values.get("methods", ()))
        values["training"] = TrainingConfig(**values.get("training", {}))
        return cls(**values)

    def fingerprint(self) -> str:
        """A short hash of the whole config (part of the run id)."""
        text = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def resolve_methods(names: str, summarize: bool) -> tuple[str, ...]:
    """A comma list of methods; 'all' = every method that differs from the others."""
    if names.strip() == "all":
        return tuple(m for m in ALL_METHODS if summarize or m != "maft_wo_summary")
    return tuple(m.strip() for m in names.split(",") if m.strip())


@dataclass(frozen=True)
class Runtime:
    """Where the experiment runs. Not part of the results: may differ on resume."""

    out_dir: Path
    model_path: Path
    base_model_name: str = DEFAULT_BASE_MODEL_NAME
    inference_url: str | None = None  # None: launch our own server
    adapter_store: Path | None = None  # default: <out_dir>/store
    served_model_path: str | None = None  # the --model string of a running server
    max_lora_rank: int = DEFAULT_MAX_LORA_RANK
    max_loras: int = 8
    max_model_len: int = 4096
    inference_dtype: str = "auto"  # bfloat16 where native (GPU, AVX512-BF16/AMX), else float32
    cpu_kvcache_gib: int = 2
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    concurrency: int = 32
    request_timeout_s: float = 1800.0
    startup_timeout_s: float = 900.0

    @property
    def store_dir(self) -> Path:
        """The adapter store the server resolves names from."""
        return self.adapter_store or self.out_dir / "store"

    def to_json(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}
