"""H-MoRe networks: Φ (world flow, RAFT-small + self-attention), Ψ (subject motion), the HMoRe module."""
from .config import HMoReConfig
from .hmore import DEFAULT_WEIGHTS, MIN_SIZE, HMoRe, default_weights, get_model, load_weights

__all__ = ["HMoReConfig", "HMoRe", "get_model", "load_weights", "default_weights", "DEFAULT_WEIGHTS", "MIN_SIZE"]
