"""Drawn annotations -> tile and slide labels; the annotated-tile loss; editable cohort tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_wsirobust.cohort import (
    UNLABELLED,
    AnnotationError,
    CohortError,
    CohortRow,
    LabelMask,
    Region,
    SlideAnnotations,
    build_cohort_table,
    parse_value_labels,
    read_cohort_table,
    record_for_slide,
    records_to_rows,
    write_cohort_csv,
)
from napari_wsirobust.mil import LOSS_PRESETS, Bag, FeatureSource, TrainConfig, Trainer
from napari_wsirobust.mil.train import annotated_tile_loss
from napari_wsirobust.tiling import TileGrid, TilingConfig

LABELS = ["normal", "tumour"]


def _grid(n_rows: int = 4, n_cols: int = 5, tile: int = 100, mpp: float = 0.5) -> TileGrid:
    """Tiles of 100 px at 0.5 µm/px: tile (r, c) has its centre at ((r + .5) * 50, (c + .5) * 50) µm."""
    rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    return TileGrid(
        config=TilingConfig(),
        mpp=(mpp, mpp),
        rows=rows,
        cols=cols,
        x0=(cols * tile).astype(float),
        y0=(rows * tile).astype(float),
        tissue_fraction=np.ones(rows.size),
        tile_size_level0=(tile, tile),
        stride_level0=(tile, tile),
        grid_shape=(n_rows, n_cols),
        read_level=0,
    )


def _rect(y0: float, x0: float, y1: float, x1: float) -> np.ndarray:
    return np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float)


def test_tiles_take_the_label_of_the_region_holding_their_centre() -> None:
    grid = _grid()
    tumour = Region(_rect(0, 0, 100, 100), "tumour")  # centres at 25 and 75 µm: rows 0-1, cols 0-1
    normal = Region(_rect(100, 150, 200, 250), "normal")  # rows 2-3, cols 3-4
    labels = SlideAnnotations(regions=(tumour, normal)).tile_labels(grid, LABELS)
    expected = np.full((4, 5), UNLABELLED)
    expected[:2, :2] = 1
    expected[2:, 3:] = 0
    np.testing.assert_array_equal(labels.reshape(4, 5), expected)


def test_a_tile_in_regions_of_two_classes_is_left_unlabelled() -> None:
    grid = _grid()
    a = Region(_rect(0, 0, 100, 100), "tumour")
    b = Region(_rect(0, 40, 100, 150), "normal")  # overlaps column 1 (centre x = 75)
    labels = SlideAnnotations(regions=(a, b)).tile_labels(grid, LABELS).reshape(4, 5)
    assert labels[0, 0] == 1 and labels[0, 1] == UNLABELLED and labels[0, 2] == 0


def test_painted_mask_labels_tiles_through_its_scale_and_origin() -> None:
    grid = _grid()
    values = np.zeros((20, 25), np.uint8)  # 10 µm pixels covering 200 x 250 µm
    values[10:, :] = 1  # bottom half painted tumour (y >= 100 µm)
    values[:5, :5] = 2  # top-left 50 x 50 µm painted normal
    mask = LabelMask(values, (10.0, 10.0), (5.0, 5.0), {1: "tumour", 2: "normal"})
    labels = SlideAnnotations(masks=(mask,)).tile_labels(grid, LABELS).reshape(4, 5)
    assert (labels[2:] == 1).all()
    assert labels[0, 0] == 0
    assert (labels[:2, 1:] == UNLABELLED).all()


def test_unmapped_painted_values_and_unknown_labels_are_refused() -> None:
    mask = LabelMask(np.full((4, 4), 3, np.uint8), (1.0, 1.0), (0.0, 0.0), {1: "tumour"})
    with pytest.raises(AnnotationError, match="3=tumour"):
        SlideAnnotations(masks=(mask,)).labels_present()
    with pytest.raises(AnnotationError, match="stroma"):
        SlideAnnotations(regions=(Region(_rect(0, 0, 9, 9), "stroma"),)).tile_labels(_grid(), LABELS)


def test_slide_label_from_the_classes_drawn() -> None:
    t, n = Region(_rect(0, 0, 9, 9), "tumour"), Region(_rect(0, 0, 9, 9), "normal")
    assert SlideAnnotations(regions=(t, n)).slide_label("normal") == "tumour"
    assert SlideAnnotations(regions=(n,)).slide_label("normal") == "normal"
    with pytest.raises(AnnotationError, match="several classes"):
        SlideAnnotations(regions=(t, Region(_rect(0, 0, 9, 9), "lymph"))).slide_label("normal")
    with pytest.raises(AnnotationError, match="no labelled region"):
        SlideAnnotations().slide_label("normal")
    with pytest.raises(AnnotationError, match="3"):
        Region(np.zeros((2, 2)), "tumour")


def test_parse_value_labels() -> None:
    assert parse_value_labels("1=tumour, 2 = normal") == {1: "tumour", 2: "normal"}
    assert parse_value_labels("1: tumour; 3: fat") == {1: "tumour", 3: "fat"}
    for bad in ("", "tumour", "0=background", "x=tumour"):
        with pytest.raises(AnnotationError):
            parse_value_labels(bad)


def test_annotated_tile_loss_uses_only_annotated_picked_tiles() -> None:
    logits = torch.tensor([[[4.0, 0.0], [0.0, 4.0], [9.0, -9.0]]])  # (1 bag, 3 tiles, 2 classes)
    row = CohortRow("s", "s.tiff", "tumour", "A", "p", "train")
    bag = Bag(row, 1, 0, np.zeros((3, 2), np.float32), grid=None, tile_labels=np.array([0, 1, -1]))  # type: ignore[arg-type]
    loss = annotated_tile_loss(logits, [bag], [np.arange(3)])
    expected = torch.nn.functional.cross_entropy(logits[0, :2], torch.tensor([0, 1]))
    assert loss is not None and torch.isclose(loss, expected)
    assert annotated_tile_loss(logits, [bag], [np.array([2])]) is None  # only the unannotated tile picked
    bag.tile_labels = None
    assert annotated_tile_loss(logits, [bag], [np.arange(3)]) is None


def _bag(i: int, label: int, rng: np.random.Generator, split: str, tile_labels: bool) -> Bag:
    x = rng.normal(size=(10, 4)).astype(np.float32)
    if label:
        x[:3, 0] += 2.5
    row = CohortRow(f"s{i}", f"s{i}.tiff", LABELS[label], "A", f"p{i}", split)
    tl = np.where(np.arange(10) < 3, label, 0) if tile_labels and label else None
    return Bag(row, label, 0, x, grid=None, views=[x.copy()], tile_labels=tl)  # type: ignore[arg-type]


def test_trainer_adds_the_annotated_term_only_when_tiles_are_annotated() -> None:
    rng = np.random.default_rng(0)
    source = FeatureSource("t", 4)
    config = TrainConfig(epochs=2, min_epochs=1, losses=LOSS_PRESETS["plain"])

    def losses(annotated: bool) -> dict[str, float]:
        train = [_bag(i, i % 2, rng, "train", annotated) for i in range(8)]
        val = [_bag(10 + i, i % 2, rng, "val", False) for i in range(4)]
        return next(Trainer(train, val, LABELS, ["A"], source, config).epochs()).losses

    assert "annotated" in losses(True) and losses(True)["annotated"] > 0
    assert "annotated" not in losses(False)


def test_build_cohort_table_refuses_unlabelled_and_duplicate_slides(tmp_path: Path) -> None:
    rows = [CohortRow(f"s{i}", f"/x/s{i}.tiff", LABELS[i % 2], "A", f"p{i}", "") for i in range(10)]
    table = build_cohort_table(rows, "t")
    assert {r.split for r in table.rows} <= {"train", "val", "test"} and table.label_names == LABELS
    with pytest.raises(CohortError, match="no label for s0"):
        build_cohort_table([CohortRow("s0", "/x", "", "A", "p", "train"), *rows[1:]], "t")
    with pytest.raises(CohortError, match="repeated: s1"):
        build_cohort_table([*rows, rows[1]], "t")


def test_records_round_trip_through_a_cohort_csv(tmp_path: Path) -> None:
    slides = []
    for i in range(4):
        p = tmp_path / f"slide{i}.tiff"
        p.write_bytes(b"")
        slides.append(p)
    records = [record_for_slide(str(p), "aperio") for p in slides]
    for i, rec in enumerate(records):
        rec.update(label=LABELS[i % 2], split="train" if i < 2 else "val", patient="")
    rows = records_to_rows(records)
    assert rows[0].patient == "slide0" and rows[0].site == "aperio"
    out = write_cohort_csv(rows, tmp_path / "cohort.csv")
    back = read_cohort_table(out)
    assert [(r.path, r.label, r.site, r.split) for r in back.rows] == [
        (r.path, r.label, r.site, r.split) for r in rows
    ]
    records[0]["split"] = "training"
    with pytest.raises(
        CohortError, match="row 1: split 'training' is not one of train, val, test, reference"
    ):
        records_to_rows(records)
    for split in ("test_ood", "reference"):  # evaluation splits by name, and unlabelled re-scans
        records[0].update(split=split, label="" if split == "reference" else "tumour")
        assert records_to_rows(records)[0].split == split
    assert [r.split for r in build_cohort_table(records_to_rows(records)).rows][:2] == ["reference", "train"]
    records[0].update(split="train", path=str(tmp_path / "missing.tiff"))
    with pytest.raises(CohortError, match="not found"):
        records_to_rows(records)
