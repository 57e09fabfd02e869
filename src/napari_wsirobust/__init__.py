"""napari-wsirobust: robust whole-slide image analysis in napari.

The compute packages (``io``, ``synthetic`` and later ``tiling``, ``encoders``, ``features``, ``mil``,
``diagnostics``) import neither Qt nor napari; the napari adapters live in ``_reader.py``,
``_sample_data.py`` and ``widgets/``.
"""

__version__ = "0.1.0"
