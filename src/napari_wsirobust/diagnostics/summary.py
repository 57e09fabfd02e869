"""The headline rows of cohort diagnostics as (metric, value) text, shared by ``wsirobust diagnose``
and the Robustness dock's table (no Qt)."""

from __future__ import annotations

from .cohort import CohortDiagnostics
from .croma_metrics import RobustnessMetrics


def format_number(value: float) -> str:
    """Three decimals, or "n/a" for NaN."""
    return "n/a" if value != value else f"{value:.3f}"


def _percent(share: float) -> str:
    return "n/a" if share != share else f"{100 * share:.0f} %"


def _or_reason(value: float, reason: str, details: str) -> str:
    return f"n/a ({reason})" if value != value else f"{value:.3f} ({details})"


def robustness_rows(metrics: RobustnessMetrics, level: str) -> list[tuple[str, str]]:
    """RI, MaRI and CRoMa of ``level`` ("tiles", "slides"), each followed by its worst-10 % tail."""
    m = metrics
    support = f"support {_percent(m.ri_support)} of {m.n_samples} {level}"
    return [
        (f"RI, {level}", _or_reason(m.ri, m.ri_reason, f"k={m.k}, {support}; {m.source}")),
        (f"RI worst 10 %, {level}", format_number(m.ri_worst)),
        (f"MaRI, {level}", _or_reason(m.mari, m.mari_reason, f"k={m.k}, tau {m.mari_tau:.3g}")),
        (f"MaRI worst 10 %, {level}", format_number(m.mari_worst)),
        (
            f"CRoMa, {level}",
            _or_reason(
                m.croma,
                m.croma_reason,
                f"median, m={m.croma_m}; {_percent(m.croma_site_dominant)} site-dominant",
            ),
        ),
        (f"CRoMa worst 10 %, {level}", format_number(m.croma_worst)),
    ]


def headline(diag: CohortDiagnostics) -> str:
    """Slides, sites and the chance level of a site probe."""
    return f"{diag.n_slides} slides, {len(diag.sites)} sites (chance {diag.chance:.2f})"


def summary_rows(diag: CohortDiagnostics) -> list[tuple[str, str]]:
    """Slides and sites, then :func:`metric_rows` (the per-site AUC rows are left to the caller)."""
    return [
        ("slides / sites", f"{diag.n_slides} / {len(diag.sites)} (chance {diag.chance:.2f})"),
        *metric_rows(diag),
    ]


def metric_rows(diag: CohortDiagnostics) -> list[tuple[str, str]]:
    """The robustness metrics of tiles and slides, the site probes and the site shares of variance."""
    return [
        *robustness_rows(diag.tile_robustness, "tiles"),
        *robustness_rows(diag.slide_robustness, "slides"),
        ("site probe, embeddings", format_number(diag.site_predictability_embeddings)),
        ("site probe, head", format_number(diag.site_predictability_head)),
        ("site probe by chance (95th pct)", format_number(diag.probe_chance)),
        ("site variance share, embeddings", format_number(diag.site_variance_embeddings)),
        ("site variance share, head", format_number(diag.site_variance_head)),
    ]
