"""The model: `ModelConfig` (params section `model`), the configurable `GPT`, and its checkpoint file.

`GPT` is imported on first use, so reading a config (every stage's CLI does) costs no torch import.
Importing the GPT imports torch but never touches CUDA.
"""

from golf.artifact.model.config import ModelConfig

__all__ = ["GPT", "ModelConfig"]


def __getattr__(name: str):
    if name == "GPT":
        from golf.artifact.model.gpt import GPT

        return GPT
    raise AttributeError(f"module 'golf.artifact.model' has no attribute {name!r}")
