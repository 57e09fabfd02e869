"""Training the MIL head on cached features, with the robustness losses (no Qt).

:class:`Trainer` runs epochs as a generator (:meth:`Trainer.epochs`) yielding an :class:`EpochReport`
(loss terms, validation metrics) after each, so a GUI can plot it and stop iterating to cancel.
The best model so far (highest validation AUC, ties broken by lower validation loss) is kept in
memory and, with ``checkpoint_dir``, saved atomically every time it improves: cancelling (or a
killed process) keeps the best checkpoint. :meth:`Trainer.result` gives it at any time.

Per step: a class-balanced batch of bags (each bag's tiles subsampled to ``max_tiles``), total loss

    L = CE(slide logits, y)
        + w_inst * CE(instance logits of the top-k attended tiles, y)   [+ bottom-k -> class 0]
        + w_con * contrastive(z, y, site) + w_adv * CE(site adversary(GRL(z)), site)
        + w_cons * consistency(bag, scanner-swapped view of the bag) + w_aem * (-H(attention))
        + w_view * CE(view logits, y) + w_align * alignment(z, z of the view)
        + w_ann * CE(instance logits of annotated tiles, their drawn labels)   [bags with annotations]
        + w_mom * site-moment(z of every training slide, y, site)   [a separate reference forward pass]
        + w_pair * paired-scan(z, p of the re-scanned patients' slides)  [train + reference re-scans]

Reference re-scans (``reference``: tissue scanned at several sites, labels unused) feed only the
paired-scan term; every other term sees the training slides alone.

(formulas of each term in :mod:`napari_wsirobust.mil.losses`). AdamW, linear warm-up then cosine
decay; the adversary's reversal strength ramps up as 2 / (1 + exp(-10 p)) - 1 over training
progress p (Ganin & Lempitsky). Seeded: the same data and config give the same model on CPU.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Generator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..cohort import NO_RESCANS, REFERENCE, CohortRow, rescanned_patients
from ..errors import WsiRobustError
from ..stain import StainProfile
from .bags import Bag
from .calibration import fit_calibration
from .checkpoint import CheckpointConfig, HeadConfig, save_checkpoint
from .losses import (
    SiteAdversary,
    adversarial_site_loss,
    aem_loss,
    consistency_loss,
    paired_scan_loss,
    representation_alignment_loss,
    site_moment_loss,
    technical_contrastive_loss,
)
from .metrics import auc_ovr, balanced_accuracy
from .model import GatedAttentionMIL
from .site_norm import SiteStandardiser


class TrainingError(WsiRobustError, ValueError):
    """Training cannot start with the data or configuration given."""


# The weighted loss terms of a LossConfig, in order; the other fields are their parameters.
LOSS_TERMS = (
    "instance",
    "contrastive",
    "adversarial",
    "consistency",
    "view_ce",
    "view_align",
    "aem",
    "site_moment",
    "paired_scan",
    "annotated_tiles",
)
ALWAYS_ON_TERMS = ("instance", "annotated_tiles")  # on by default: a preset's description leaves them out


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms (0 switches a term off) and their parameters."""

    instance: float = 0.3
    instance_top_k: int = 4
    contrastive: float = 0.0
    contrastive_temperature: float = 0.2
    adversarial: float = 0.0
    adversarial_strength: float = 1.0
    adversarial_conditional: bool = True  # the adversary also sees the label (CDANN)
    consistency: float = 0.0
    consistency_attention: float = 1.0
    view_ce: float = 0.0  # CE on the scanner-swapped view too (plain augmentation)
    view_align: float = 0.0  # slide representation of the view pulled onto the original's
    aem: float = 0.0
    site_moment: float = 0.0  # within-label site-mean spread of z over the training slides (see losses)
    site_moment_tiles: int = 64  # tiles per slide in that every-step reference forward pass
    site_moment_slides: int = 64  # at most this many training slides (a random subset) per step
    paired_scan: float = 0.0  # one patient's scans on several scanners made to agree (see losses)
    annotated_tiles: float = 1.0  # CE on tiles labelled by drawn annotations (only bags that have them)
    site_standardise: bool = False

    @property
    def needs_views(self) -> bool:
        return self.consistency > 0 or self.view_ce > 0 or self.view_align > 0

    def describe(self) -> str:
        parts = [
            f"{name}={getattr(self, name)}"
            for name in LOSS_TERMS
            if name not in ALWAYS_ON_TERMS and getattr(self, name) > 0
        ]
        if self.site_standardise:
            parts.append("site-standardised")
        return ", ".join(parts) or "plain"


# Named configurations: the plain head, the per-site standardisation baseline, each robustness term
# alone, "robust" (augmentation CE + contrastive + conditional adversary), "robust-align" (the same plus
# representation alignment) and "robust-moment" (robust-align plus site-moment matching), which measured
# best on the shortcut benchmark (BENCHMARKS.md) and is the default. "robust-site" keeps only the terms
# that read the site column (contrastive, adversary, site-moment): the view-free configuration for
# harmonised tiles (stain/harmonise.py), which have no scanner-swapped views. "paired-scan" and
# "robust-paired" need training patients scanned on two or more scanners (the same patient id at
# several sites).
LOSS_PRESETS: dict[str, LossConfig] = {
    "plain": LossConfig(),
    "site-norm": LossConfig(site_standardise=True),
    "contrastive": LossConfig(contrastive=1.0),
    "adversarial": LossConfig(adversarial=1.0),
    "consistency": LossConfig(consistency=2.0),
    "augment": LossConfig(view_ce=1.0),
    "aem": LossConfig(aem=0.1),
    "robust": LossConfig(view_ce=1.0, contrastive=1.0, adversarial=1.0),
    "robust-align": LossConfig(view_ce=1.0, contrastive=1.0, adversarial=1.0, view_align=1.0),
    "site-moment": LossConfig(site_moment=30.0),
    "robust-site": LossConfig(contrastive=1.0, adversarial=1.0, site_moment=30.0),
    "robust-moment": LossConfig(
        view_ce=1.0, contrastive=1.0, adversarial=1.0, view_align=1.0, site_moment=30.0
    ),
    "paired-scan": LossConfig(paired_scan=3.0),
    "robust-paired": LossConfig(
        view_ce=1.0, contrastive=1.0, adversarial=1.0, view_align=1.0, site_moment=30.0, paired_scan=3.0
    ),
}
DEFAULT_PRESET = "robust-moment"
HARMONISED_PRESET = "robust-site"  # "auto" when the tiles are harmonised (no views to learn from)
AUTO_PRESET = "auto"  # robust-paired when labelled training patients were re-scanned, else DEFAULT_PRESET


def resolve_preset(name: str, paired_rows: list[CohortRow], harmonised: bool = False) -> str:
    """The preset ``name`` stands for: "auto" picks robust-paired when some *training* patient among
    ``paired_rows`` (the train and reference splits) was scanned at two or more sites (best on the
    labelled re-scan benchmarks) and the default otherwise. Re-scans in the unlabelled reference split
    alone do not switch it: there robust-paired helped on average but one training in five collapsed
    with a larger reference set (BENCHMARKS.md, reference K = 4), so it stays the user's choice. With
    ``harmonised`` tiles "auto" is :data:`HARMONISED_PRESET` (no view terms)."""
    if name != AUTO_PRESET:
        if name not in LOSS_PRESETS:
            choices = ", ".join([AUTO_PRESET, *LOSS_PRESETS])
            raise TrainingError(f"unknown loss configuration {name!r}; choose from {choices}")
        return name
    if harmonised:  # harmonised tiles have no scanner-swapped views (BENCHMARKS.md, harmonised)
        return HARMONISED_PRESET
    labelled = [row for row in paired_rows if row.split != REFERENCE]
    return "robust-paired" if rescanned_patients(labelled) else DEFAULT_PRESET


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 1e-2
    warmup_epochs: int = 3
    patience: int = 20
    min_epochs: int = 10
    max_tiles: int = 256
    balance: str = "label"  # "label": classes equally often; "label-site": every (label, site) cell
    validate_on_views: bool = True  # validation AUC pools the slides and their scanner-swapped views
    hidden_dim: int = 128
    attention_dim: int = 64
    dropout: float = 0.25
    seed: int = 0
    losses: LossConfig = field(default_factory=LossConfig)
    calibrate: bool = True  # fit a temperature and offsets on the validation slides (mil/calibration.py)


@dataclass(frozen=True)
class FeatureSource:
    """Where the features come from (recorded in the checkpoint and checked at prediction)."""

    encoder_name: str
    embed_dim: int
    encoder_weights_id: str = ""
    tiling: dict[str, Any] = field(default_factory=dict)
    harmonise: dict[str, Any] = field(default_factory=dict)  # Harmonisation.to_dict(); empty: none
    color: str = "as-scanned"  # the slides' colour mode ("srgb": embedded ICC profiles applied)


@dataclass(frozen=True)
class EpochReport:
    epoch: int  # 1-based
    n_epochs: int
    losses: dict[str, float]  # mean of each loss term over the epoch's steps
    val_auc: float
    val_balanced_accuracy: float
    val_loss: float
    best_epoch: int
    best_val_auc: float
    improved: bool
    elapsed_s: float
    stopping: bool = False  # early stopping fired after this epoch


@dataclass
class TrainResult:
    model: GatedAttentionMIL
    config: CheckpointConfig
    standardiser: SiteStandardiser | None
    history: list[EpochReport]
    best_epoch: int
    cancelled: bool
    checkpoint_path: Path | None = None


def paired_scans(bags: list[Bag], limit: int = 64) -> list[list[Bag]]:
    """The bags of patients with slides from two or more sites, grouped by patient (at most
    ``limit`` slides in all, whole patients only)."""
    rescanned = rescanned_patients([b.row for b in bags])
    groups, total = [], 0
    for patient in sorted(rescanned):
        group = [b for b in bags if b.row.patient == patient]
        if total + len(group) <= limit:
            groups.append(group)
            total += len(group)
    return groups


def _profile_dict(site: str, profile: StainProfile | Mapping[str, Any]) -> dict[str, Any]:
    """A site's colour profile as JSON-ready data (``StainProfile.to_dict()``, tuples as lists)."""
    if isinstance(profile, StainProfile):
        data: Mapping[str, Any] = profile.to_dict()
    elif isinstance(profile, Mapping):
        data = profile
    else:
        raise TrainingError(f"site {site}: a colour profile is a StainProfile or its dict, not {profile!r}")
    return {str(k): list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _pad(bags: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(b) for b in bags)
    x = torch.zeros(len(bags), n, bags[0].shape[1])
    mask = torch.zeros(len(bags), n, dtype=torch.bool)
    for i, b in enumerate(bags):
        x[i, : len(b)] = torch.from_numpy(b)
        mask[i, : len(b)] = True
    return x, mask


def instance_loss(
    instance_logits: torch.Tensor, attention: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, k: int
) -> torch.Tensor:
    """CE of the top-k attended tiles' instance logits against the slide label; in bags of a
    non-zero class the bottom-k tiles are also pushed to class 0 (the reference, e.g. "normal")."""
    terms = []
    for i in range(len(labels)):
        n = int(mask[i].sum())
        kk = max(1, min(k, n // 2 if n >= 2 else 1))
        att = attention[i, :n]
        top = torch.topk(att, kk).indices
        terms.append(F.cross_entropy(instance_logits[i, top], labels[i].repeat(kk), reduction="sum") / kk)
        if int(labels[i]) != 0 and n >= 2 * kk:
            bottom = torch.topk(-att, kk).indices
            zeros = torch.zeros(kk, dtype=torch.long)
            terms.append(F.cross_entropy(instance_logits[i, bottom], zeros, reduction="sum") / kk)
    return torch.stack(terms).sum() / len(labels)


def annotated_tile_loss(
    instance_logits: torch.Tensor, batch: list[Bag], picks: list[np.ndarray]
) -> torch.Tensor | None:
    """Mean CE of the instance logits of annotated tiles (``Bag.tile_labels`` >= 0) against their
    drawn labels, over the tiles picked for this step; None when no picked tile is annotated."""
    logits, targets = [], []
    for i, (bag, idx) in enumerate(zip(batch, picks)):
        if bag.tile_labels is None:
            continue
        labels = bag.tile_labels[idx]
        keep = np.flatnonzero(labels >= 0)
        if len(keep):
            logits.append(instance_logits[i, torch.from_numpy(keep)])
            targets.append(torch.from_numpy(labels[keep].astype(np.int64)))
    if not logits:
        return None
    return F.cross_entropy(torch.cat(logits), torch.cat(targets))


class Trainer:
    """Trains one head; see the module docstring."""

    def __init__(
        self,
        train: list[Bag],
        val: list[Bag],
        label_names: list[str],
        site_names: list[str],
        source: FeatureSource,
        config: TrainConfig | None = None,
        checkpoint_dir: str | Path | None = None,
        reference: list[Bag] | None = None,
        site_profiles: Mapping[str, StainProfile | Mapping[str, Any]] | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        # the training sites' colour profiles, recorded in the checkpoint (for its model card)
        self.site_profiles = {
            str(site): _profile_dict(site, profile) for site, profile in (site_profiles or {}).items()
        }
        self._created: tuple[int, str] | None = None  # (best epoch, when it was recorded)
        self.train_bags, self.val_bags = train, val
        self.reference_bags = list(reference or [])  # re-scans for the paired-scan loss only
        self.label_names, self.site_names = list(label_names), list(site_names)
        self.source = source
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self._validate()
        losses = self.config.losses
        self.standardiser = (
            SiteStandardiser().fit([b.features for b in train], [b.row.site for b in train])
            if losses.site_standardise
            else None
        )
        torch.manual_seed(self.config.seed)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self._multi_site = len({max(b.site, 0) for b in train}) > 1  # site-moment matching has sites to match
        self._paired = paired_scans(train + self.reference_bags)
        self.head_config = HeadConfig(
            in_dim=source.embed_dim,
            n_classes=len(label_names),
            hidden_dim=self.config.hidden_dim,
            attention_dim=self.config.attention_dim,
            dropout=self.config.dropout,
        )
        self.model = self.head_config.build()
        self.adversary = (
            SiteAdversary(
                self.config.hidden_dim,
                max(2, len(site_names)),
                strength=0.0,
                n_classes=len(label_names) if losses.adversarial_conditional else 0,
            )
            if losses.adversarial > 0
            else None
        )
        params = list(self.model.parameters()) + (
            list(self.adversary.parameters()) if self.adversary is not None else []
        )
        self.optimiser = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        self.history: list[EpochReport] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch = 0
        self.best_key = (-math.inf, -math.inf)
        self.checkpoint_path: Path | None = None
        self.finished = False

    # -- setup ------------------------------------------------------------------------------------
    def _validate(self) -> None:
        if not self.train_bags:
            raise TrainingError("no training slides (split 'train' is empty)")
        if not self.val_bags:
            raise TrainingError("no validation slides (split 'val' is empty); early stopping needs them")
        for bag in self.train_bags + self.val_bags + self.reference_bags:
            if bag.features.ndim != 2 or bag.features.shape[1] != self.source.embed_dim:
                raise TrainingError(
                    f"{bag.row.slide_id}: features of shape {bag.features.shape}, expected "
                    f"(tiles, {self.source.embed_dim}) from {self.source.encoder_name}"
                )
            if bag.tile_labels is not None and len(bag.tile_labels) != bag.n_tiles:
                raise TrainingError(
                    f"{bag.row.slide_id}: {len(bag.tile_labels)} tile labels for {bag.n_tiles} tiles"
                )
        present = {b.label for b in self.train_bags}
        if len(present) < 2:
            raise TrainingError(
                f"the training split has one label only ({self.label_names[present.pop()]}); need two or more"
            )
        if self.config.losses.needs_views and not all(b.views for b in self.train_bags):
            raise TrainingError("the consistency loss needs scanner-swapped views of every training slide")
        paired_rows = [b.row for b in self.train_bags + self.reference_bags]
        if self.config.losses.paired_scan > 0 and not rescanned_patients(paired_rows):
            raise TrainingError(NO_RESCANS)
        site_aware = self.config.losses.adversarial > 0 or self.config.losses.contrastive > 0
        if site_aware and len({b.row.site for b in self.train_bags}) < 2:
            raise TrainingError("site-aware losses need training slides from at least two sites")

    def _features(self, bag: Bag, array: np.ndarray) -> np.ndarray:
        if self.standardiser is None:
            return array
        return self.standardiser.transform(array, bag.row.site)

    def _lr_factor(self, step: int, total: int, warmup: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def _balanced_order(self) -> list[int]:
        keys = [
            (b.label, b.row.site) if self.config.balance == "label-site" else (b.label, "")
            for b in self.train_bags
        ]
        counts = {k: keys.count(k) for k in set(keys)}
        weights = torch.tensor([1.0 / counts[k] for k in keys])
        return torch.multinomial(weights, len(weights), replacement=True, generator=self.generator).tolist()

    # -- one epoch ------------------------------------------------------------------------------
    def _step(self, batch: list[Bag], progress: float) -> dict[str, float]:
        cfg, losses = self.config, self.config.losses
        picks, plain, views = [], [], []
        for bag in batch:
            n = bag.n_tiles
            if n > cfg.max_tiles:
                idx = torch.randperm(n, generator=self.generator)[: cfg.max_tiles].sort().values.numpy()
            else:
                idx = np.arange(n)
            picks.append(idx)
            plain.append(self._features(bag, bag.features[idx]))
            if losses.needs_views:
                v = int(torch.randint(len(bag.views), (1,), generator=self.generator))
                views.append(self._features(bag, bag.views[v][idx]))
        x, mask = _pad(plain)
        labels = torch.tensor([b.label for b in batch])
        sites = torch.tensor([max(b.site, 0) for b in batch])
        out = self.model.forward_details(x, mask)
        terms: dict[str, torch.Tensor] = {"ce": F.cross_entropy(out.logits, labels)}
        if losses.instance > 0 and out.instance_logits is not None:
            terms["instance"] = losses.instance * instance_loss(
                out.instance_logits, out.attention, mask, labels, losses.instance_top_k
            )
        if losses.contrastive > 0:
            terms["contrastive"] = losses.contrastive * technical_contrastive_loss(
                out.representation, labels, sites, losses.contrastive_temperature
            )
        if self.adversary is not None:
            self.adversary.strength = losses.adversarial_strength * (
                2.0 / (1.0 + math.exp(-10 * progress)) - 1
            )
            terms["adversarial"] = losses.adversarial * adversarial_site_loss(
                self.adversary, out.representation, sites, labels
            )
        if losses.needs_views:
            xv, _ = _pad(views)
            out_v = self.model.forward_details(xv, mask)
            if losses.consistency > 0:
                terms["consistency"] = losses.consistency * consistency_loss(
                    out.logits, out_v.logits, out.attention, out_v.attention, losses.consistency_attention
                )
            if losses.view_ce > 0:
                terms["view_ce"] = losses.view_ce * F.cross_entropy(out_v.logits, labels)
            if losses.view_align > 0:
                terms["view_align"] = losses.view_align * representation_alignment_loss(
                    out.representation, out_v.representation
                )
        if losses.aem > 0:
            terms["aem"] = losses.aem * aem_loss(out.attention, mask)
        if losses.site_moment > 0 and self._multi_site:
            terms["site_moment"] = losses.site_moment * self._site_moment_term()
        if losses.paired_scan > 0 and self._paired:
            terms["paired_scan"] = losses.paired_scan * self._paired_scan_term()
        if losses.annotated_tiles > 0 and out.instance_logits is not None:
            annotated = annotated_tile_loss(out.instance_logits, batch, picks)
            if annotated is not None:
                terms["annotated"] = losses.annotated_tiles * annotated
        total = torch.stack(list(terms.values())).sum()
        self.optimiser.zero_grad(set_to_none=True)
        total.backward()
        self.optimiser.step()
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["total"] = float(total.detach())
        return values

    def _site_moment_term(self) -> torch.Tensor:
        """:func:`site_moment_loss` over the training slides (all of them, or a random
        ``site_moment_slides`` of them; ``site_moment_tiles`` random tiles each)."""
        losses = self.config.losses
        bags = self.train_bags
        if len(bags) > losses.site_moment_slides:
            order = torch.randperm(len(bags), generator=self.generator)[: losses.site_moment_slides]
            bags = [bags[int(i)] for i in order.sort().values]
        arrays = []
        for bag in bags:
            idx = torch.randperm(bag.n_tiles, generator=self.generator)[: losses.site_moment_tiles]
            arrays.append(self._features(bag, bag.features[idx.sort().values.numpy()]))
        x, mask = _pad(arrays)
        z = self.model.forward_details(x, mask).representation
        labels = torch.tensor([b.label for b in bags])
        sites = torch.tensor([max(b.site, 0) for b in bags])
        return site_moment_loss(z, labels, sites)

    def _paired_scan_term(self) -> torch.Tensor:
        """:func:`paired_scan_loss` over the slides of patients scanned at several sites
        (``site_moment_tiles`` random tiles each). Unlabelled reference slides are pooled with their
        attention detached (see losses: paired-scan): with no label to say where the tumour is, they
        may shape the representation but not where the head looks."""
        tiles = self.config.losses.site_moment_tiles
        arrays, groups, labelled = [], [], []
        for group, bags in enumerate(self._paired):
            for bag in bags:
                idx = torch.randperm(bag.n_tiles, generator=self.generator)[:tiles].sort().values.numpy()
                arrays.append(self._features(bag, bag.features[idx]))
                groups.append(group)
                labelled.append(bag.label >= 0)
        x, mask = _pad(arrays)
        out = self.model.forward_details(x, mask, train_attention=torch.tensor(labelled))
        return paired_scan_loss(out.representation, torch.softmax(out.logits, dim=-1), torch.tensor(groups))

    @torch.no_grad()
    def _validate_epoch(self) -> tuple[float, float, float]:
        self.model.eval()
        probs, labels, ces = [], [], []
        for bag in self.val_bags:
            arrays = [bag.features] + (bag.views if self.config.validate_on_views else [])
            for array in arrays:
                logits = self.model(torch.from_numpy(self._features(bag, array))[None])
                ces.append(float(F.cross_entropy(logits, torch.tensor([bag.label]))))
                probs.append(torch.softmax(logits, -1)[0].numpy())
                labels.append(bag.label)
        p, y = np.stack(probs), np.array(labels)
        return auc_ovr(y, p), balanced_accuracy(y, p.argmax(1)), float(np.mean(ces))

    def epochs(self) -> Generator[EpochReport, None, None]:
        """Train, yielding a report after every epoch; stop iterating to cancel."""
        cfg = self.config
        n_train = len(self.train_bags)
        steps_per_epoch = max(1, math.ceil(n_train / cfg.batch_size))
        total_steps = cfg.epochs * steps_per_epoch
        warmup = cfg.warmup_epochs * steps_per_epoch
        start = time.perf_counter()
        step = 0
        stale = 0
        for epoch in range(1, cfg.epochs + 1):
            self.model.train()
            order = self._balanced_order()
            sums: dict[str, float] = {}
            for b in range(steps_per_epoch):
                for group in self.optimiser.param_groups:
                    group["lr"] = cfg.lr * self._lr_factor(step, total_steps, warmup)
                batch = [self.train_bags[i] for i in order[b * cfg.batch_size : (b + 1) * cfg.batch_size]]
                if not batch:
                    continue
                for k, v in self._step(batch, step / max(1, total_steps - 1)).items():
                    sums[k] = sums.get(k, 0.0) + v / steps_per_epoch
                step += 1
            val_auc, val_bacc, val_loss = self._validate_epoch()
            key = (-math.inf if math.isnan(val_auc) else val_auc, -val_loss)
            improved = key > self.best_key
            if improved:
                self.best_key, self.best_epoch, stale = key, epoch, 0
                self.best_state = copy.deepcopy(self.model.state_dict())
            else:
                stale += 1
            stopping = epoch >= cfg.min_epochs and stale >= cfg.patience
            report = EpochReport(
                epoch,
                cfg.epochs,
                sums,
                val_auc,
                val_bacc,
                val_loss,
                self.best_epoch,
                self.best_key[0],
                improved,
                time.perf_counter() - start,
                stopping,
            )
            self.history.append(report)
            if improved and self.checkpoint_dir is not None:
                self.checkpoint_path = self.save(self.checkpoint_dir)
            yield report
            if stopping:
                break
        self.finished = True

    # -- results --------------------------------------------------------------------------------
    def best_model(self) -> GatedAttentionMIL:
        model = self.head_config.build()
        model.load_state_dict(self.best_state if self.best_state is not None else self.model.state_dict())
        return model.eval()

    def checkpoint_config(self) -> CheckpointConfig:
        best = next((r for r in self.history if r.epoch == self.best_epoch), None)
        metrics: dict[str, Any] = {
            "epochs_run": len(self.history),
            "best_epoch": self.best_epoch,
            "train_slides": len(self.train_bags),
            "val_slides": len(self.val_bags),
            "paired_scan_slides": sum(len(g) for g in self._paired),  # re-scans the paired loss can see
        }
        if best is not None:
            metrics.update(
                val_auc=best.val_auc, val_balanced_accuracy=best.val_balanced_accuracy, val_loss=best.val_loss
            )
        if self._created is None or self._created[0] != self.best_epoch:  # one time per best model
            self._created = (self.best_epoch, datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        return CheckpointConfig(
            head=self.head_config,
            encoder_name=self.source.encoder_name,
            embed_dim=self.source.embed_dim,
            label_names=self.label_names,
            encoder_weights_id=self.source.encoder_weights_id,
            tiling=dict(self.source.tiling),
            harmonise=dict(self.source.harmonise),
            color=self.source.color,
            losses={**asdict(self.config.losses), "sites": self.site_names},
            metrics=metrics,
            training={k: v for k, v in asdict(self.config).items() if k != "losses"},
            created=self._created[1],
            site_profiles=copy.deepcopy(self.site_profiles),
            cohort=self._cohort_counts(),
            calibration=self._calibration(),
        )

    @torch.no_grad()
    def _calibration(self) -> dict[str, Any]:
        """The best model's calibration on the validation slides (empty when switched off or when a
        class has no validation slide)."""
        return self.calibration_on(self.val_bags) if self.config.calibrate else {}

    @torch.no_grad()
    def calibration_on(self, bags: list[Bag]) -> dict[str, Any]:
        """The best model's calibration fitted on ``bags`` (empty when a class has none of them)."""
        model = self.best_model()
        probs = [
            torch.softmax(model(torch.from_numpy(self._features(bag, bag.features))[None]), -1)[0].numpy()
            for bag in bags
        ]
        fitted = fit_calibration(np.stack(probs), [b.label for b in bags]) if probs else None
        return fitted.to_dict() if fitted is not None else {}

    def _cohort_counts(self) -> dict[str, Any]:
        """Slides per split (train, val, and reference re-scans when given), per site and per label."""
        splits = {"train": self.train_bags, "val": self.val_bags, "reference": self.reference_bags}
        counts: dict[str, Any] = {}
        for split, bags in splits.items():
            if not bags:
                continue
            labels = Counter(self.label_names[b.label] for b in bags if b.label >= 0)
            counts[split] = {
                "slides": len(bags),
                "sites": dict(sorted(Counter(b.row.site for b in bags).items())),
                "labels": {name: labels[name] for name in self.label_names if labels[name]},
            }
        return counts

    def save(self, model_dir: str | Path) -> Path:
        extras = self.standardiser.to_tensors() if self.standardiser is not None else None
        return save_checkpoint(self.best_model(), self.checkpoint_config(), model_dir, extras)

    def result(self) -> TrainResult:
        """The best model so far (also after a cancel)."""
        return TrainResult(
            self.best_model(),
            self.checkpoint_config(),
            self.standardiser,
            list(self.history),
            self.best_epoch,
            cancelled=not self.finished,
            checkpoint_path=self.checkpoint_path,
        )


def train_to_completion(trainer: Trainer) -> TrainResult:
    for _ in trainer.epochs():
        pass
    return trainer.result()
