"""A model card: what a trained MIL head is, what it was trained on and how well it did (no Qt).

:meth:`ModelCard.from_config` builds it from a checkpoint's config, :meth:`ModelCard.load` from a model
folder (checked as loading checks it, without reading the weights). :meth:`ModelCard.to_text` is
aligned plain text for a terminal or a dialog; :meth:`ModelCard.to_dict` is JSON-ready, with ``None``
where the model does not record a value. A model saved before a field existed shows it as
"not recorded"; nothing the card reads makes it fail.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..stain import HarmonisationError, profile_from_dict
from ..tiling import TilingConfig
from .checkpoint import CheckpointConfig, load_checkpoint_config
from .train import LOSS_TERMS

NOT_RECORDED = "not recorded"
SPLITS = ("train", "val", "test", "reference")
LABEL_WIDTH = 20
TEXT_WIDTH = 100
_METRIC_NAMES = {"auc": "AUC", "ece": "ECE", "balanced_accuracy": "balanced accuracy"}


@dataclass(frozen=True)
class ModelCard:
    """The facts a user needs before trusting a head's predictions; see the module docstring."""

    model: str | None  # the model folder, when known
    notice: str  # shown next to every prediction ("" : none)
    label_names: list[str]
    created: str | None
    package_version: str
    format_version: int
    encoder_name: str
    embed_dim: int
    encoder_weights_id: str | None
    tiling: dict[str, Any] | None  # as prediction builds it (recorded values over the defaults)
    color: str
    cohort: dict[str, dict[str, Any]] | None  # split -> slides, sites (site -> slides), labels
    sites: list[str] | None
    site_profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # the recorded ones
    losses: dict[str, float] | None = None  # weights of the non-zero terms
    site_standardised: bool | None = None
    adversary_conditional: bool | None = None
    harmonisation: dict[str, Any] | None = None  # {"site", "reference"}; None: tiles as scanned
    metrics: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None  # {"temperature", "bias", "n_slides"}; None: not calibrated

    @classmethod
    def from_config(
        cls, config: CheckpointConfig, model_dir: str | os.PathLike[str] | None = None
    ) -> ModelCard:
        losses = _mapping(config.losses)
        terms = {k: float(losses[k]) for k in LOSS_TERMS if _is_number(losses.get(k)) and losses[k] != 0}
        cohort = _cohort(_mapping(config.cohort), _mapping(config.metrics))
        profiles = {
            str(k): dict(v) for k, v in _mapping(config.site_profiles).items() if isinstance(v, Mapping)
        }
        harmonise = _mapping(config.harmonise)
        return cls(
            model=None if model_dir is None else str(model_dir),
            notice=config.notice.strip() if isinstance(config.notice, str) else "",
            label_names=list(config.label_names),
            created=config.created or None,
            package_version=config.package_version,
            format_version=config.format_version,
            encoder_name=config.encoder_name,
            embed_dim=config.embed_dim,
            encoder_weights_id=config.encoder_weights_id or None,
            tiling=_tiling(_mapping(config.tiling)),
            color=config.color,
            cohort=cohort,
            sites=_sites(losses.get("sites"), profiles, cohort),
            site_profiles=profiles,
            losses=terms if losses else None,
            site_standardised=bool(losses["site_standardise"]) if "site_standardise" in losses else None,
            adversary_conditional=(
                bool(losses["adversarial_conditional"])
                if "adversarial_conditional" in losses and "adversarial" in terms
                else None
            ),
            harmonisation=(
                {"site": str(harmonise.get("site", "")), "reference": _mapping(harmonise.get("reference"))}
                if harmonise
                else None
            ),
            metrics=dict(_mapping(config.metrics)) or None,
            calibration=dict(_mapping(config.calibration)) or None,
        )

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str]) -> ModelCard:
        """The card of a model folder; a folder that does not load raises :class:`CheckpointError`."""
        _, config = load_checkpoint_config(model_dir)
        return cls.from_config(config, model_dir)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite numbers as ``None``)."""
        return _json_ready(asdict(self))

    def to_text(self) -> str:
        """Aligned plain text, one fact per line, sections indented."""
        rows: list[tuple[str, str]] = []
        if self.model is not None:
            rows.append(("Model", self.model))
        rows += [
            ("Notice", self.notice or "none"),
            ("Labels", ", ".join(self.label_names)),
            ("Created", self.created or NOT_RECORDED),
            ("Package", f"napari-wsirobust {self.package_version} (checkpoint format {self.format_version})"),
            ("Encoder", f"{self.encoder_name} ({self.embed_dim}-d features)"),
            ("Encoder weights", self.encoder_weights_id or NOT_RECORDED),
            ("Tiling", _tiling_text(self.tiling)),
            ("Colour", self.color),
        ]
        rows += self._cohort_rows() + self._site_rows()
        rows += [
            ("Losses", self._losses_text()),
            ("Harmonisation", self._harmonisation_text()),
            ("Calibration", self._calibration_text()),
        ]
        rows += self._metric_rows()
        return "\n".join(_line(label, value) for label, value in rows)

    # -- sections ---------------------------------------------------------------------------------
    def _cohort_rows(self) -> list[tuple[str, str]]:
        if not self.cohort:
            return [("Training cohort", NOT_RECORDED)]
        rows = [("Training cohort", "")]
        for split, entry in self.cohort.items():
            slides = entry.get("slides")
            parts = [f"{slides} slides" if slides is not None else f"slides {NOT_RECORDED}"]
            parts.append(f"by site {_counts(entry.get('sites'))}")
            if entry.get("labels"):
                parts.append(f"by label {_counts(entry['labels'])}")
            rows.append((f"  {split}", "; ".join(parts)))
        return rows

    def _site_rows(self) -> list[tuple[str, str]]:
        if not self.sites:
            return [("Sites", NOT_RECORDED)]
        names = ", ".join(self.sites)
        if not self.site_profiles:
            return [("Sites", f"{names} (colour profiles {NOT_RECORDED})")]
        rows = [("Sites", names)]
        for site in self.sites:
            profile = self.site_profiles.get(site)
            rows.append((f"  {site}", profile_summary(profile) if profile else f"profile {NOT_RECORDED}"))
        return rows

    def _losses_text(self) -> str:
        if self.losses is None:
            return NOT_RECORDED
        parts = ["cross-entropy"]
        for name, weight in self.losses.items():
            extra = " (label-conditional)" if name == "adversarial" and self.adversary_conditional else ""
            parts.append(f"{name.replace('_', ' ')} {weight:g}{extra}")
        if self.site_standardised:
            parts.append("site-standardised features")
        return ", ".join(parts)

    def _calibration_text(self) -> str:
        c = self.calibration
        if not c:
            return "none (the head's own probabilities)"
        try:
            offsets = ", ".join(f"{float(b):+.3f}" for b in c["bias"])
            return (
                f"temperature {float(c['temperature']):.3f}, offsets {offsets}, fitted on "
                f"{int(c.get('n_slides', 0))} validation slides"
            )
        except (KeyError, TypeError, ValueError):
            return "unreadable"

    def _harmonisation_text(self) -> str:
        if self.harmonisation is None:
            return "none (tiles as scanned)"
        site = self.harmonisation["site"] or "an unnamed site"
        return f"into site {site}'s profile: {profile_summary(self.harmonisation['reference'])}"

    def _metric_rows(self) -> list[tuple[str, str]]:
        if not self.metrics:
            return [("Metrics", NOT_RECORDED)]
        by_split: dict[str, list[str]] = {}
        rows: list[tuple[str, str]] = []
        other: list[str] = []
        for key, value in self.metrics.items():
            split, _, name = key.partition("_")
            if isinstance(value, Mapping):
                rows += _nested_rows(key.replace("_", " "), value)
            elif split in SPLITS and name:
                if name != "slides":  # the cohort section has them
                    by_split.setdefault(split, []).append(f"{_metric_name(name)} {_value(value)}")
            else:
                other.append(f"{_metric_name(key)} {_value(value)}")
        split_rows = [(f"  {s}", ", ".join(by_split[s])) for s in SPLITS if s in by_split]
        rows = split_rows + rows + ([("  training", ", ".join(other))] if other else [])
        return [("Metrics", ""), *rows]


def profile_summary(profile: Mapping[str, Any] | None) -> str:
    """A colour profile in one line: stain vectors, glass, sharpness, JPEG quality."""
    try:
        p = profile_from_dict(profile or {})
    except HarmonisationError as exc:
        return f"unreadable profile ({exc})"
    jpeg = f"JPEG q{p.jpeg_quality}" if p.jpeg_quality is not None else "JPEG quality n/a"
    glass = "(" + ",".join(f"{v:.0f}" for v in p.background_rgb) + ")"
    return (
        f"H {_vector(p.hematoxylin_od)}, E {_vector(p.eosin_od)}, glass {glass}, "
        f"sharpness {p.sharpness:.1f}, {jpeg}"
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cohort(cohort: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """Split -> {"slides", "sites", "labels"} from the cohort record, else the slide counts in the
    metrics (older models); None when neither has them."""
    if cohort:
        order = [s for s in SPLITS if s in cohort] + [s for s in cohort if s not in SPLITS]
        return {
            split: {
                "slides": _mapping(cohort[split]).get("slides"),
                "sites": dict(_mapping(cohort[split]).get("sites") or {}) or None,
                "labels": dict(_mapping(cohort[split]).get("labels") or {}) or None,
            }
            for split in order
        }
    counts = {s: metrics[f"{s}_slides"] for s in SPLITS if _is_number(metrics.get(f"{s}_slides"))}
    return {s: {"slides": n, "sites": None, "labels": None} for s, n in counts.items()} or None


def _sites(
    recorded: Any, profiles: Mapping[str, Any], cohort: Mapping[str, Mapping[str, Any]] | None
) -> list[str] | None:
    """Site names in training order: the recorded list, then any only the profiles or cohort name."""
    names = [str(s) for s in recorded] if isinstance(recorded, list) else []
    for entry in (cohort or {}).values():
        names += list(entry.get("sites") or {})
    names += list(profiles)
    unique = list(dict.fromkeys(names))
    return unique or None


def _tiling(tiling: Mapping[str, Any]) -> dict[str, Any] | None:
    if not tiling:
        return None
    try:
        return asdict(TilingConfig(**tiling))
    except (TypeError, ValueError):  # checked at load; a hand-built config may still hold anything
        return dict(tiling)


def _tiling_text(tiling: Mapping[str, Any] | None) -> str:
    if not tiling:
        return NOT_RECORDED
    try:
        return (
            f"{tiling['tile_size']} px tiles at {tiling['target_mpp']:g} µm/px, "
            f"overlap {tiling['overlap']} px, tissue fraction at least {tiling['min_tissue_fraction']:g}"
        )
    except (KeyError, TypeError, ValueError):
        return ", ".join(f"{k} {v}" for k, v in tiling.items())


def _counts(counts: Mapping[str, Any] | None) -> str:
    if not counts:
        return NOT_RECORDED
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _nested_rows(title: str, value: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A metrics entry holding an object (e.g. per site): one row per inner object, or one row."""
    if all(isinstance(v, Mapping) for v in value.values()) and value:
        return [
            (f"  {title} {k}", ", ".join(f"{_metric_name(n)} {_value(x)}" for n, x in v.items()))
            for k, v in value.items()
        ]
    return [(f"  {title}", ", ".join(f"{_metric_name(str(k))} {_value(v)}" for k, v in value.items()))]


def _metric_name(name: str) -> str:
    return _METRIC_NAMES.get(name, name.replace("_", " "))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.3f}"
    return str(value)


def _vector(values: tuple[float, ...]) -> str:
    return "(" + ",".join(f"{v:.3f}" for v in values) + ")"  # no spaces: a group never wraps


def _line(label: str, value: str) -> str:
    """``label`` in a column of :data:`LABEL_WIDTH`, ``value`` wrapped beside it."""
    if not value:
        return label
    head = label.ljust(LABEL_WIDTH - 1) + " "
    width = TEXT_WIDTH - len(head)
    lines = textwrap.wrap(value, width, break_on_hyphens=False, break_long_words=False) or [""]
    return "\n".join([head + lines[0], *(" " * len(head) + rest for rest in lines[1:])])


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value
