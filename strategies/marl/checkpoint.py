"""Checkpoints: a torch ``state_dict`` file plus JSON metadata beside it.

``PATH.pt`` holds ``{"mlmi": ..., "nwrqk": ..., "regime": ..., "critic": ...}``
state dicts (tensors only; the running normalisation statistics are buffers in
them) and is read with ``torch.load(..., weights_only=True)``. ``PATH.json`` holds
the format, the feature names and agent slices, the normalisation statistics in
plain numbers, the hyperparameters, the scenario's config hash, the code version,
the learned allocator's raw weights (if any), the training figures and the bars it was
trained on (``data``: see :mod:`engine.app.provenance`).

:func:`load_checkpoint` refuses, with :class:`engine.core.errors.ConfigError`, a
checkpoint whose feature names, agent slices or indicator parameters differ from
those the scenario will compute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import torch

from engine.core.errors import ConfigError
from engine.core.version import code_version
from indicators.features import FEATURE_NAMES, MLMI_SLICE, NWRQK_SLICE, REGIME_SLICE
from strategies.marl.networks import AGENTS, CentralCritic, PolicyNet

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "load_checkpoint", "save_checkpoint"]

# 2: the .json records the training bars (engine.app.provenance); 1 did not
CHECKPOINT_FORMAT = "emarl.mappo/2"


class Checkpoint:
    def __init__(self, policies: list[PolicyNet], critic: CentralCritic, meta: dict[str, Any]):
        self.policies = policies
        self.critic = critic
        self.meta = meta


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix == ".json":
        p = p.with_suffix(".pt")
    return p, p.with_suffix(".json")


def feature_signature(indicator_params: Any) -> dict[str, Any]:
    """What a checkpoint's inputs depend on: names, slices and the indicator parameters."""

    params = msgspec.to_builtins(indicator_params)
    params.pop("timezone", None)  # the hour columns are not agent inputs
    return {
        "feature_names": list(FEATURE_NAMES),
        "agent_slices": {
            "mlmi": list(MLMI_SLICE),
            "nwrqk": list(NWRQK_SLICE),
            "regime": list(REGIME_SLICE),
        },
        "indicator_params": params,
    }


def save_checkpoint(
    path: str | Path,
    policies: list[PolicyNet],
    critic: CentralCritic,
    *,
    signature: dict[str, Any],
    extra: dict[str, Any],
) -> tuple[Path, Path]:
    """Write ``PATH.pt`` and ``PATH.json``; returns both paths."""

    weights_path, meta_path = _paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {agent: policy.state_dict() for agent, policy in zip(AGENTS, policies, strict=True)}
    state["critic"] = critic.state_dict()
    torch.save(state, weights_path)
    normalisation = {
        agent: {
            "mean": policy.norm.mean.tolist(),
            "var": policy.norm.var.tolist(),
            "count": float(policy.norm.count),
        }
        for agent, policy in zip(AGENTS, policies, strict=True)
    }
    meta = {
        "format": CHECKPOINT_FORMAT,
        "agents": list(AGENTS),
        "actions": ["bearish", "neutral", "bullish"],
        **signature,
        "normalisation": normalisation,
        "code_version": code_version(),
        **extra,
    }
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return weights_path, meta_path


def load_checkpoint(path: str | Path, signature: dict[str, Any] | None = None) -> Checkpoint:
    """Load a checkpoint (dropout off); refuse one that does not match ``signature``."""
    weights_path, meta_path = _paths(path)
    for p in (weights_path, meta_path):
        if not p.is_file():
            raise ConfigError(
                f"checkpoint file {p} not found (train one with `emarl train SCENARIO`)"
            )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{meta_path}: not valid JSON: {exc}") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(
            f"{meta_path}: format {meta.get('format')!r} is not {CHECKPOINT_FORMAT!r} "
            "(format 1 does not record the bars it was trained on); retrain it with "
            "`emarl train SCENARIO`"
        )
    if signature is not None:
        for key in ("feature_names", "agent_slices", "indicator_params"):
            if meta.get(key) != signature[key]:
                raise ConfigError(
                    f"checkpoint {weights_path} was trained on different features: its {key} "
                    f"is {meta.get(key)!r} but the scenario gives {signature[key]!r}; "
                    f"retrain with `emarl train` on this scenario's [indicators]"
                )
    try:
        state = torch.load(weights_path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise ConfigError(f"{weights_path}: cannot read the checkpoint: {exc}") from exc
    dropout = float(meta.get("hyperparameters", {}).get("dropout", 0.1))
    policies = [PolicyNet(agent, dropout=dropout) for agent in AGENTS]
    critic = CentralCritic(dropout=dropout)
    try:
        for agent, policy in zip(AGENTS, policies, strict=True):
            policy.load_state_dict(state[agent])
        critic.load_state_dict(state["critic"])
    except (KeyError, RuntimeError) as exc:
        raise ConfigError(f"{weights_path}: the weights do not fit the networks: {exc}") from exc
    for module in (*policies, critic):
        module.eval()
    return Checkpoint(policies, critic, meta)
