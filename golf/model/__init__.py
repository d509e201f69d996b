"""The model: `ModelConfig` (params section `model`), the configurable `GPT`, and its checkpoint file.

Importing this package imports torch but never touches CUDA.
"""

from golf.model.config import ModelConfig
from golf.model.gpt import GPT

__all__ = ["GPT", "ModelConfig"]
