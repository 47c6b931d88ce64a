"""Each agent's finetuning data from stored debates (method.md, "Finetuning data, per agent").

Pure and deterministic: the same debates, task and config (seed included) give the same
datasets, in the same order, whatever the order of the input debates. Choices, in order:
- Debates of another task are dropped ("other_task"). One debate per question is kept (questions
  whitespace-normalised, case-folded): the newest by (created_at, id) ("duplicate"), before
  labelling, so the newest debate stands for its question even if it proves unusable.
- Label y_hat (`label_of`): if use_ground_truth, the latest feedback, else the reference answer
  (normalised by the task where they parse), else the majority vote (`final_answer`). No label:
  dropped ("no_label"). A vote labels only with a strict majority (majority="strict", the
  default): more than half of the debate's agents gave it (consensus > 1/2; an unparseable
  answer counts against it), else "no_majority" (a 3-way split would otherwise make the tie
  rule, agent 0's answer, everyone's label). majority="plurality" keeps the answering rule.
  min_consensus drops vote-labelled debates only ("low_consensus"); missing consensus is 0.
- A response cut at the token limit (finish_reason "length") is never a target: not as a
  generator example, not as a critic's last turn, nor as an earlier turn that carries loss
  (critic_loss="all_assistant"); counted per agent as "truncated".
- Generator n (D_G): agent n's own round-1 generator turn if its answer is equivalent to y_hat
  (`task.is_correct`: unparseable is never right); single-turn example, train_on="final".
- Critic n: debates with rounds >= 2 whose agent-n critic turn of the last round (`rounds`) is
  right; C- if agent n's round-1 answer was wrong or unparseable, else C+. Example = that turn's
  messages + its response (agent n's whole conversation; if its earlier assistant turns are not
  agent n's own responses it is skipped, counted as "inconsistent"); train_on=critic_loss.
- Mix (the authors' code): all of C- plus n_plus = min(|C+|, round(|C-| * (1 - w) / w)) C+
  (rounding half up) drawn with a RNG seeded by (seed, agent). w = 0: all C+, no C-; w = 1: C-
  only. No C- and w > 0 -> no critic data: that is the method; the stats give the "reason".
- Summarizer turns are never targets; agents n >= debate.agents get nothing from that debate;
  examples keep the debates' chronological order.
"""

from maft.curation.datasets import curate
from maft.curation.examples import mix_critic, plus_count
from maft.curation.labels import Labelled, dedupe_questions, label_of, question_key
from maft.curation.types import (
    DROP_REASONS,
    TRUNCATED,
    AgentDataset,
    Curation,
    CurationConfig,
    Example,
    LossOn,
    Majority,
    Outcome,
)

__all__ = [
    "DROP_REASONS",
    "TRUNCATED",
    "AgentDataset",
    "Curation",
    "CurationConfig",
    "Example",
    "Labelled",
    "LossOn",
    "Majority",
    "Outcome",
    "curate",
    "dedupe_questions",
    "label_of",
    "mix_critic",
    "plus_count",
    "question_key",
]
