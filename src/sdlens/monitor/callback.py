"""``EpistemicCallback``: live epistemic telemetry and the suppression detector inside a TRL trainer.

Two lines in a TRL script::

    from sdlens.monitor import monitor_trainer
    monitor_trainer(trainer)            # before trainer.train(); `sdlens train` does it by default

What :meth:`EpistemicCallback.attach` listens to, and why there:

- each training rollout batch: the student's own completions (text and token ids) with the rewards of every rank's
  rollouts, as TRL's ``_calculate_rewards(inputs, prompts, completions, completion_ids_list)`` returns them (GRPO,
  SDPO and their relatives call it once per rollout batch). The callback keeps each completion, its token count and
  whether its reward says correct; with several processes the batches are gathered (``gather_object``, every rank
  calls it at the same point), so every rank holds the same rollouts and reaches the same detector state (early
  stopping must agree across ranks).
- each log record: before the trainer reports (``report_to``: W&B, TensorBoard, ...), the statistics of the
  rollouts since the last log are computed and added as ``epistemic/...`` keys, so they travel the trainer's own
  logging path; the same record (plus the detector's verdict) is appended to ``OUT/epistemic.jsonl`` by rank 0.
- each distillation pass (SDPO): the teacher minus student log-probability at hedge positions
  (:mod:`sdlens.monitor.mechanism`), summed across ranks at log time.

sdlens' :class:`~sdlens.train.sdpo_trainer.SdlensSDPOTrainer` has a listener list for each
(``rollout_listeners``, ``log_listeners``, ``distillation_listeners``). Any other TRL trainer (``GRPOTrainer``, a
script's own subclass) has no such hooks: there the callback wraps that trainer object's ``_calculate_rewards`` and
``log`` instead, and the mechanism signal is absent.

As a ``TrainerCallback`` it sets ``control.should_training_stop`` when ``stop_on_suppression`` is on and the
detector says ``suppressing``. A resumed run replays ``epistemic.jsonl`` up to the checkpoint's step into the
detector, so the baseline is the original run's.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from sdlens.monitor.config import LOG_FILE, MonitorConfig
from sdlens.monitor.detector import STATES, Detector, Verdict
from sdlens.monitor.mechanism import GapAccumulator
from sdlens.monitor.stats import Rollout, step_stats
from sdlens.train.rewards import completion_text

__all__ = ["LOG_FILE", "EpistemicCallback", "MonitorConfig", "monitor_trainer"]

logger = logging.getLogger("sdlens.monitor")


def _numeric(prefix: str, values: dict[str, Any]) -> dict[str, float]:
    """Only real numbers go to report_to (TensorBoard warns on anything else)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            continue
        out[f"{prefix}{k}"] = float(v)
    return out


class EpistemicCallback(TrainerCallback):
    """Per logging step: hedging statistics of the student's rollouts, the mechanism signal (SDPO) and the detector.

    Create it, then :meth:`attach` it to the trainer (or call :func:`monitor_trainer`). Attributes for other code:
    ``detector`` (its ``state`` is ``ok`` / ``warning`` / ``suppressing``), ``records`` (every record written),
    ``state_listeners`` (callables given each step's :class:`~sdlens.monitor.detector.Verdict`).
    """

    def __init__(self, config: MonitorConfig | None = None, **overrides: Any):
        cfg = config or MonitorConfig()
        if overrides:
            cfg = MonitorConfig(**{**asdict(cfg), **overrides, "detector": overrides.get("detector", cfg.detector)})
        self.config = cfg
        self.detector = Detector(cfg.detector)
        self.records: list[dict[str, Any]] = []
        self.state_listeners: list[Any] = []
        self.trainer: Any = None
        self.tokenizer: Any = None
        self.gap: GapAccumulator | None = None
        self._buffer: list[Rollout] = []
        self._writer: Any = None
        self._stop = False
        self._mechanism_note = False

    # ---- wiring -----------------------------------------------------------------------------------------------------

    def attach(self, trainer: Any) -> EpistemicCallback:
        """Hook the trainer (see the module doc); adds this callback to it if it is not there yet."""
        if self.trainer is trainer:
            return self
        if not callable(getattr(trainer, "_calculate_rewards", None)):
            raise TypeError(
                f"{type(trainer).__name__} does not expose its completions (no _calculate_rewards): the epistemic "
                "monitor needs an online RL trainer such as TRL's GRPOTrainer or SDPOTrainer"
            )
        self.trainer = trainer
        pc = getattr(trainer, "processing_class", None)
        self.tokenizer = getattr(pc, "tokenizer", pc)
        if isinstance(getattr(trainer, "rollout_listeners", None), list):
            trainer.rollout_listeners.append(self._on_rollouts)
            trainer.log_listeners.append(self.flush)
        else:
            self._wrap_rewards(trainer)
            self._wrap_log(trainer)
        if self.config.mechanism and isinstance(getattr(trainer, "distillation_listeners", None), list):
            self.gap = GapAccumulator(self.tokenizer, self.config.lexicon)
            trainer.distillation_listeners.append(self.gap)
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        trainer.epistemic_monitor = self
        return self

    def _on_rollouts(self, completions, completion_ids_list, rewards) -> None:
        self._collect(self.trainer, completions, completion_ids_list, rewards)

    def _wrap_rewards(self, trainer: Any) -> None:
        original = trainer._calculate_rewards

        def _calculate_rewards(inputs, prompts, completions, completion_ids_list):
            rewards = original(inputs, prompts, completions, completion_ids_list)
            if trainer.model.training:
                self._collect(trainer, completions, completion_ids_list, rewards)
            return rewards

        trainer._calculate_rewards = _calculate_rewards

    def _wrap_log(self, trainer: Any) -> None:
        original = trainer.log

        def log(logs: dict[str, Any], *args: Any, **kwargs: Any):
            if not any(str(k).startswith("eval_") for k in logs):
                logs.update(self.flush())
            return original(logs, *args, **kwargs)

        trainer.log = log

    # ---- collection -------------------------------------------------------------------------------------------------

    def _correct_column(self, trainer: Any, n_columns: int) -> int | None:
        if n_columns == 0:
            return None
        name = self.config.correct_reward
        names = list(getattr(trainer, "reward_func_names", []) or [])
        if name is None:
            return 0
        if name not in names:
            raise ValueError(f"correct_reward {name!r} is not one of the trainer's rewards ({', '.join(names)})")
        return names.index(name)

    def _collect(self, trainer: Any, completions, completion_ids_list, rewards) -> None:

        n_local = len(completions)
        acc = trainer.accelerator
        start = acc.process_index * n_local
        col = self._correct_column(trainer, rewards.shape[1] if rewards.dim() == 2 else 0)
        values = rewards[start : start + n_local, col].tolist() if col is not None else [None] * n_local
        local = []
        for c, ids, r in zip(completions, completion_ids_list, values, strict=True):
            correct = None if r is None or math.isnan(r) else bool(r > self.config.correct_threshold)
            local.append(Rollout(completion_text(c), len(ids), correct))
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            local = gather_object(local)
        self._buffer.extend(local)

    # ---- per logging step -------------------------------------------------------------------------------------------

    def _mechanism_sums(self):
        if self.gap is None:
            return None
        sums = self.gap.sums.clone()
        acc = self.trainer.accelerator
        if acc.num_processes > 1:
            sums = acc.reduce(sums.float().to(acc.device), reduction="sum").double().cpu()
        self.gap.reset()
        return sums

    def flush(self) -> dict[str, float]:
        """Compute the record of the rollouts since the last call; returns the ``epistemic/...`` numbers to log."""
        trainer = self.trainer
        sums = self._mechanism_sums()
        rollouts, self._buffer = self._buffer, []
        has_mech = sums is not None and float(sums[1] + sums[3]) > 0
        if not rollouts and not has_mech:
            return {}
        step = int(trainer.state.global_step)
        stats = step_stats(rollouts, tokenizer=self.tokenizer, lexicon=self.config.lexicon) if rollouts else {}
        mech = GapAccumulator.result(sums) if has_mech else None
        if rollouts:
            verdict = self.detector.update(stats.get("hedges_per_1k_tokens"), stats.get("mean_length"), step)
        else:
            verdict = self.detector.last
        record = {"step": step, "time": round(time.time(), 3), **stats, "mechanism": mech}
        record["detector"] = verdict.to_dict()
        self.records.append(record)
        if trainer.accelerator.is_main_process:
            self._write(record)
        if verdict.changed:
            self._announce(verdict)
        for listener in self.state_listeners:
            listener(verdict)
        if self.config.stop_on_suppression and verdict.state == "suppressing":
            self._stop = True
        out = _numeric("epistemic/", {k: v for k, v in stats.items() if k != "n_responses"})
        out["epistemic/n_responses"] = float(len(rollouts))
        out.update(_numeric("epistemic/mechanism/", mech or {}))
        out["epistemic/detector/state"] = float(STATES.index(verdict.state))
        out["epistemic/detector/changed"] = float(verdict.changed)  # 1 at the step the state changed: an alert series
        out.update(
            _numeric(
                "epistemic/detector/",
                {
                    "hedge_change": verdict.hedge_change,
                    "length_change": verdict.length_change,
                    "hedge_p": verdict.hedge_p,
                },
            )
        )
        return out

    def _path(self) -> Path:
        base = self.config.out_dir or self.trainer.args.output_dir
        return Path(base) / LOG_FILE

    def _write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            from sdlens.schema import JsonlWriter

            self._writer = JsonlWriter(self._path())
        self._writer.write(record)

    def _announce(self, v: Verdict) -> None:
        if not self.trainer.accelerator.is_main_process:
            return
        text = f"epistemic monitor: step {v.step}: {v.state} - {v.reason}"
        (logger.warning if v.state != "ok" else logger.info)(text)
        report_to = getattr(self.trainer.args, "report_to", None) or []
        if "wandb" in report_to:
            try:
                import wandb

                if wandb.run is not None:
                    level = wandb.AlertLevel.WARN if v.state != "ok" else wandb.AlertLevel.INFO
                    wandb.alert(title=f"sdlens: {v.state}", text=text, level=level)
            except Exception as e:  # an alert must never stop training
                logger.info("could not send the W&B alert: %s", e)

    # ---- TrainerCallback --------------------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer is None:
            logger.warning("EpistemicCallback was added without attach(trainer): it cannot see the rollouts")
            return
        if state.global_step > 0 and not self.detector.hedge:
            self._replay(int(state.global_step))

    def _replay(self, upto: int) -> None:
        """Rebuild the detector from the log of the run being resumed (records up to its checkpoint's step)."""
        path = self._path()
        if not path.exists():
            return
        last: dict[int, dict[str, Any]] = {}
        for line in path.read_text("utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec.get("step"), int) and rec["step"] <= upto:
                last[rec["step"]] = rec
        for step in sorted(last):
            rec = last[step]
            self.detector.update(rec.get("hedges_per_1k_tokens"), rec.get("mean_length"), step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._stop and not control.should_training_stop:
            logger.warning("epistemic monitor: stopping training at step %s (--stop-on-suppression)", state.global_step)
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        # rollouts after the last logging step; the buffer is the same on every rank (gathered), so every rank
        # enters flush and its cross-rank reduce together (a rank-local condition here could hang DDP)
        if self.trainer is not None and self._buffer:
            self.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def summary(self) -> dict[str, Any]:
        """The detector's final verdict and when each state first fired."""
        return self.detector.summary()


def monitor_trainer(trainer: Any, config: MonitorConfig | None = None, **overrides: Any) -> EpistemicCallback:
    """Attach an :class:`EpistemicCallback` to a TRL trainer (keyword arguments: :class:`MonitorConfig` fields)."""
    return EpistemicCallback(config, **overrides).attach(trainer)
