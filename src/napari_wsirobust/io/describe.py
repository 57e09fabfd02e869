"""Plain-text description of slide metadata (shared by the CLI and the widgets)."""

from __future__ import annotations

from typing import Any


def format_metadata(meta: dict[str, Any]) -> str:
    """Human-readable summary of a slide's metadata."""
    mpp = (
        f"{meta['mpp_x']:.4g} x {meta['mpp_y']:.4g} µm/px ({meta['mpp_source']})"
        if meta.get("mpp_x")
        else f"unknown ({meta['mpp_source']}): 1 px = 1 unit"
    )
    levels = ", ".join(f"{w}x{h}" for w, h in meta["level_dimensions"])
    colour = "sRGB (embedded profile applied)" if meta.get("color") == "srgb" else "as scanned"
    lines = [
        f"File: {meta['path']}",
        f"Backend: {meta.get('backend', 'tiffslide')}",
        f"Vendor: {meta.get('vendor') or 'generic TIFF'}",
        f"Objective: {meta['objective_power']:g}x" if meta.get("objective_power") else "Objective: -",
        f"MPP: {mpp}",
        f"Levels: {levels}" + (f" (+{meta['virtual_levels']} virtual)" if meta["virtual_levels"] else ""),
        f"Storage: {meta['storage']}" + (f", tiles {meta['tile_size']}" if meta["tile_size"] else ""),
        f"Pixels: {meta['channels']} channel(s) {meta['dtype']}"
        + ("" if meta["is_rgb"] else " - not an RGB slide, view only"),
        f"Associated images: {', '.join(meta['associated_images']) or '-'}",
        f"Colour profile: {meta.get('icc_profile') or 'none embedded'}",
        f"Colour: {colour}",
    ]
    lines += [f"Note: {n}" for n in meta.get("notes", [])]
    return "\n".join(lines)
