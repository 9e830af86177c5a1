"""H-MoRe networks: Φ (world flow, RAFT-small + self-attention), Ψ (subject motion), the HMoRe module."""
from .config import HMoReConfig
from .hmore import MIN_SIZE, HMoRe, get_model, load_weights

__all__ = ["HMoReConfig", "HMoRe", "get_model", "load_weights", "MIN_SIZE"]
