"""Models shipped with the package (data files: safetensors + JSON, never code).

``demo/``: the default encoder's (effnet-lite0-imagenet) MIL head trained with the best robust
configuration of the shortcut benchmark on the default synthetic cohort, on harmonised tiles; rebuild
it with ``python benchmarks/bench_shortcut.py --harmonise --save-demo-model``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_MODEL_DIR", "demo_model_dir"]

DEMO_MODEL_DIR = Path(__file__).resolve().parent / "demo"


def demo_model_dir() -> Path:
    """Folder of the bundled demo head (raises FileNotFoundError if the package lacks it)."""
    if not (DEMO_MODEL_DIR / "model.safetensors").exists():
        raise FileNotFoundError(
            f"the bundled demo model is missing from {DEMO_MODEL_DIR}; reinstall napari-wsirobust or rebuild "
            "it with benchmarks/bench_shortcut.py --save-demo-model"
        )
    return DEMO_MODEL_DIR
