"""The trainer's settings: defaults come from the training config, and bad values are refused."""

import pytest
from pydantic import ValidationError

from services.trainer.lora.config import LoraConfigSpec, TrainConfig
from services.trainer.settings import TrainerSettings


def test_defaults_are_the_training_configs() -> None:
    s, lora, train = TrainerSettings(), LoraConfigSpec(), TrainConfig()
    assert (s.lora_rank, s.lora_alpha) == (lora.rank, lora.alpha)
    assert (s.learning_rate, s.batch_size, s.max_seq_len) == (
        train.learning_rate, train.batch_size, train.max_seq_len)
    # "auto" picks fp32 on CPUs without native bf16, where bf16 is emulated and slow.
    assert s.train_dtype == "auto"


def test_environment_overrides_the_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAFT_TRAIN_DTYPE", "float32")
    assert TrainerSettings().train_dtype == "float32"


def test_unknown_dtype_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAFT_TRAIN_DTYPE", "fp8")
    with pytest.raises(ValidationError, match="train_dtype"):
        TrainerSettings()


def test_ground_truth_comes_from_trusted_labellers_by_default() -> None:
    from maft.run_options import RunOptions
    from services.trainer.settings import TrainerSettings

    settings = TrainerSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.trusted_labels(RunOptions().labels_from)
    assert not settings.trusted_labels(RunOptions(labels_from="any").labels_from)
    assert not TrainerSettings(labels_from="any", _env_file=None).trusted_labels(None)  # type: ignore[call-arg]
