"""Optional experiment tracking with Weights & Biases, next to the TensorBoard logs that are always written.

Off by default. With ``execution.wandb = "offline"`` every training (each fold, the final model) becomes one
W&B run whose files go to ``OUT/group/wandb/`` and can be uploaded later with ``wandb sync``; nothing goes
over the network, so it works on compute nodes without internet. ``"online"`` streams to the W&B server.
The runs of one group level share a W&B *group* derived from the configuration, so the folds of an HPC
array (one process per fold) line up in the W&B interface. Tracking never changes a number in the outputs:
it only reads the training logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from ..config import Config
from ..errors import UsageError

log = logging.getLogger("neurocare")


class Tracker:
    """No tracking: what the group level uses when W&B is off."""

    def epoch_end(self, epoch: int, logs: dict) -> None:
        """Record the metrics of one epoch (``loss``, ``val_pr_auc``, ``learning_rate``…)."""

    def summary(self, values: dict) -> None:
        """Record the final values of one training (chosen threshold, epochs run…)."""

    def finish(self) -> None:
        """Close the run; its files are complete afterwards."""


class WandbTracker(Tracker):
    """One W&B run; console capture off so the app's own output and logs stay as they are."""

    def __init__(self, cfg: Config, group_dir: Path, name: str, job_type: str, details: dict):
        import wandb

        group_dir.mkdir(parents=True, exist_ok=True)
        config = {**cfg.group_settings(), **details, "seed": cfg.execution.seed}
        self.run = wandb.init(
            project=cfg.execution.wandb_project, mode=cfg.execution.wandb, dir=str(group_dir), name=name,
            job_type=job_type, group=run_group(cfg), config=config, reinit="create_new",
            settings=wandb.Settings(console="off", silent=True, save_code=False, disable_git=True),
        )

    def epoch_end(self, epoch: int, logs: dict) -> None:
        self.run.log({key: float(value) for key, value in logs.items()}, step=epoch + 1)

    def summary(self, values: dict) -> None:
        self.run.summary.update(values)

    def finish(self) -> None:
        self.run.finish()


def run_group(cfg: Config) -> str:
    """The same for every fold of one configuration, whichever process trains it."""
    settings = {**cfg.group_settings(), "seed": cfg.execution.seed}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return f"neurocare-{digest[:10]}"


def check_tracking(cfg: Config) -> None:
    """Fail before any training when W&B logging is asked for but cannot happen."""
    if cfg.execution.wandb == "off":
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise UsageError(f"execution.wandb = {cfg.execution.wandb!r} needs the wandb package "
                         "(pip install wandb), or set it to 'off'") from None
    if cfg.execution.wandb == "online" and not (os.environ.get("WANDB_API_KEY") or _netrc_has_wandb()):
        raise UsageError("execution.wandb = 'online' needs a W&B login (wandb login, or WANDB_API_KEY); "
                         "use 'offline' and `wandb sync` later on machines without internet")


def start_tracking(cfg: Config, group_dir: Path, name: str, job_type: str, details: dict) -> Tracker:
    if cfg.execution.wandb == "off":
        return Tracker()
    tracker = WandbTracker(cfg, group_dir, name, job_type, details)
    log.info("%s: Weights & Biases run %s (%s) in %s", name, tracker.run.id, cfg.execution.wandb,
             group_dir / "wandb")
    return tracker


def _netrc_has_wandb() -> bool:
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text(encoding="utf-8")
    except OSError:
        return False
