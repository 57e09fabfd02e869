"""npe2 sample-data contributions: synthetic slides generated on first use and cached on disk.

The cache folder is ``$WSIROBUST_DATA_DIR/samples`` when that variable is set, else
``~/.cache/napari-wsirobust/samples``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._vispy import install_vispy_patches
from .io import grid_layer_transform, open_slide
from .synthetic import (
    SyntheticSlideSpec,
    TissueSpec,
    ground_truth_path_for,
    load_ground_truth,
    write_synthetic_slide,
)

LayerData = tuple[Any, dict[str, Any], str]

SAMPLE_SEEDS = {"normal": 11, "tumour": 12}


def data_dir() -> Path:
    """Where generated sample data is kept."""
    root = os.environ.get("WSIROBUST_DATA_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "napari-wsirobust"
    return base


def sample_slide_path(label: str, scanner: str) -> Path:
    """Generate (once) and return the sample slide of ``label`` scanned on ``scanner``."""
    tissue = TissueSpec(seed=SAMPLE_SEEDS[label], tumour=label == "tumour")
    path = data_dir() / "samples" / f"sample_{label}_{scanner}.tiff"
    if not (path.exists() and ground_truth_path_for(path).exists()):
        write_synthetic_slide(SyntheticSlideSpec.make(tissue, scanner), path)
    return path


def _slide_with_truth(label: str, scanner: str) -> list[LayerData]:
    path = sample_slide_path(label, scanner)
    install_vispy_patches()  # a viewer showing slides must survive removing layers (see _vispy)
    slide = open_slide(path)
    layers = slide.to_layer_data(name=f"{label} ({scanner})")
    truth = load_ground_truth(path)
    if truth.tumour.any():
        scale, translate = grid_layer_transform(truth.step_px, slide.mpp)
        layers.append(
            (
                truth.tumour.astype("uint8"),
                {
                    "name": f"{label} ({scanner}) tumour ground truth",
                    "scale": scale,
                    "translate": translate,
                    "units": ("µm", "µm"),
                    "opacity": 0.35,
                    "visible": False,
                    "metadata": {"wsirobust_ground_truth": str(path)},
                },
                "labels",
            )
        )
    return layers


def sample_normal_slide() -> list[LayerData]:
    """Synthetic normal H&E tissue scanned on profile A."""
    return _slide_with_truth("normal", "A")


def sample_tumour_slide() -> list[LayerData]:
    """Synthetic H&E tissue with tumour regions scanned on profile A, with its tumour mask."""
    return _slide_with_truth("tumour", "A")


def sample_tumour_slide_scanner_c() -> list[LayerData]:
    """The same tumour tissue as :func:`sample_tumour_slide`, scanned on profile C."""
    return _slide_with_truth("tumour", "C")
