"""Where models run: the host, ARM under QEMU user-mode emulation, and a real board over SSH."""
from edgeact.targets.base import RunResult, Target, TargetStatus
from edgeact.targets.registry import get_target, list_targets

__all__ = ["RunResult", "Target", "TargetStatus", "get_target", "list_targets"]
