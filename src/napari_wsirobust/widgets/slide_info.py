"""Slide info dock widget: open slides with clear errors, show metadata, fix a missing MPP, show a
slide as scanned or colour-managed to sRGB."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    TextEdit,
)
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QSizePolicy

from ..io import (
    LAYER_METADATA_KEY,
    PLAUSIBLE_MPP_RANGE,
    SUPPORTED_SUFFIXES,
    SlideError,
    format_metadata,
    open_slide,
)

if TYPE_CHECKING:
    import napari


def slide_layers(viewer: napari.Viewer) -> list[Any]:
    """Image layers that came from this plugin's reader (they carry slide metadata)."""
    return [layer for layer in viewer.layers if LAYER_METADATA_KEY in layer.metadata]


class SlideInfoWidget(Container):
    """Open a slide, read its metadata and override its pixel size."""

    def __init__(self, viewer: napari.Viewer) -> None:
        self._viewer = viewer
        self._file_edit = FileEdit(
            label="Slide file", mode="r", filter=" ".join(f"*{suffix}" for suffix in SUPPORTED_SUFFIXES)
        )
        self._open_button = PushButton(text="Open slide")
        self._layer_edit = ComboBox(label="Slide layer", choices=self._layer_choices)
        self._info_edit = TextEdit(value="", enabled=True)
        self._info_edit.native.setReadOnly(True)
        lines = self._info_edit.native.fontMetrics().lineSpacing()
        self._info_edit.native.setFixedHeight(14 * lines + 12)  # twelve lines and a wrapped path, no more
        self._mpp_edit = FloatSpinBox(
            label="MPP override (µm/px)",
            value=0.5,
            min=PLAUSIBLE_MPP_RANGE[0],
            max=PLAUSIBLE_MPP_RANGE[1],
            step=0.001,
        )
        self._apply_mpp_button = PushButton(text="Apply MPP")
        self._colour_edit = ComboBox(
            label="Colour",
            choices=[("As scanned", "as-scanned"), ("sRGB (embedded ICC profile)", "srgb")],
            value="as-scanned",
            tooltip="sRGB applies the colour profile embedded in the slide; analysis always uses the "
            "colour the model was trained with",
        )
        self._status_label = Label(value="")
        super().__init__(
            widgets=[
                self._file_edit,
                self._colour_edit,
                self._open_button,
                self._layer_edit,
                self._info_edit,
                self._mpp_edit,
                self._apply_mpp_button,
                self._status_label,
            ]
        )
        # only as tall as its contents: the room left goes to the docks below it
        self.native.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self._open_button.changed.connect(self._on_open_clicked)
        self._layer_edit.changed.connect(self._on_layer_changed)
        self._apply_mpp_button.changed.connect(self._on_apply_mpp_clicked)
        self._colour_edit.changed.connect(self._on_colour_changed)
        viewer.layers.events.inserted.connect(self._refresh_layers)
        viewer.layers.events.removed.connect(self._refresh_layers)
        self._on_layer_changed()

    def _layer_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in slide_layers(self._viewer)]

    def _refresh_layers(self, _event: Any = None) -> None:
        self._layer_edit.reset_choices()
        self._on_layer_changed()

    def _on_open_clicked(self, _value: Any = None) -> None:
        path = Path(str(self._file_edit.value))
        try:
            slide = open_slide(path, color=self._colour_edit.value)
            for data, kwargs, _ in slide.to_layer_data():
                self._viewer.add_image(data, **kwargs)
        except (SlideError, ValueError) as exc:
            show_error(str(exc))
            self._status_label.value = f"Could not open {path.name}"
            return
        self._status_label.value = f"Opened {path.name}"

    def _on_layer_changed(self, _value: Any = None) -> None:
        layer = self._layer_edit.value
        if layer is None:
            self._info_edit.value = "Open a slide (File > Open or the button above)."
            return
        meta = layer.metadata[LAYER_METADATA_KEY]
        self._info_edit.value = format_metadata(meta)
        if meta.get("mpp_x"):
            self._mpp_edit.value = float(meta["mpp_x"])
        colour = meta.get("color", "as-scanned")
        if self._colour_edit.value != colour:
            with self._colour_edit.changed.blocked():
                self._colour_edit.value = colour

    def _on_colour_changed(self, _value: Any = None) -> None:
        """Re-open the selected slide layer in the chosen colour mode (same layer, new pixels)."""
        layer = self._layer_edit.value
        colour = self._colour_edit.value
        if layer is None or layer.metadata[LAYER_METADATA_KEY].get("color", "as-scanned") == colour:
            return
        meta = layer.metadata[LAYER_METADATA_KEY]
        mpp = (meta["mpp_x"], meta["mpp_y"]) if meta.get("mpp_source") == "override" else None
        try:
            slide = open_slide(meta["path"], mpp=mpp, backend=meta.get("backend", "auto"), color=colour)
        except (SlideError, ValueError) as exc:
            show_error(str(exc))
            return
        data, _, _ = slide.to_layer_data()[0]
        layer.data = data
        layer.metadata = {**layer.metadata, LAYER_METADATA_KEY: slide.metadata.to_dict()}
        self._on_layer_changed()
        note = "" if slide.metadata.icc_profile else " (the slide has no embedded profile: unchanged)"
        self._status_label.value = (
            f"{layer.name}: shown {'in sRGB' if colour == 'srgb' else 'as scanned'}{note}"
        )

    def _on_apply_mpp_clicked(self, _value: Any = None) -> None:
        layer = self._layer_edit.value
        if layer is None:
            show_error("No slide layer selected: open a slide first.")
            return
        mpp = float(self._mpp_edit.value)
        try:
            slide = open_slide(layer.metadata[LAYER_METADATA_KEY]["path"], mpp=mpp)
        except (SlideError, ValueError) as exc:
            show_error(str(exc))
            return
        _, kwargs, _ = slide.to_layer_data()[0]
        layer.scale = kwargs["scale"]
        layer.units = kwargs["units"]
        layer.metadata = {**layer.metadata, LAYER_METADATA_KEY: slide.metadata.to_dict()}
        self._on_layer_changed()
        self._viewer.reset_view()
        show_info(f"{layer.name}: pixel size set to {mpp:g} µm/px")
