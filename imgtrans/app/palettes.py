"""What the drawing canvas paints with: the label palette of the model's dataset, and a starting example.

**CMP Facades.** The pix2pix facades label maps (the right halves, B, of the AB files) colour the
12 classes of the CMP Facade Database with a fixed jet-like palette. The class names and their
order are the database's own (Tylecek and Sara, *Spatial Pattern Templates for Recognition of
Objects with Regular Structure*, GCPR 2013; ``label_names.txt`` of the CMP Facade Database,
https://cmp.felk.cvut.cz/~tylecr1/facade/): 1 background, 2 facade, 3 window, 4 door, 5 cornice,
6 sill, 7 balcony, 8 blind, 9 deco, 10 molding, 11 pillar, 12 shop. The colours below were
measured, not guessed: the files are JPEG, so every colour is the median of the pixels nearest
its peak in all 400 training label maps (``benchmarks/facades_palette.py`` prints them, with
each class's share of pixels and the number of maps it appears in; the 106 test maps give the
same colours within 5 levels). The class order is the palette's hue order, and the layout agrees
with the names: sills lie under windows, doors and shops at the bottom, cornices above windows.

**Edges** (edges2shoes, edges2handbags): black strokes on white.

**Free**: any colour, for models whose inputs are not label maps (maps, night2day, your own).
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Palette:
    """The colours the canvas offers, by name.

    Attributes:
        name: ``"facades"``, ``"edges"`` or ``"free"``.
        classes: ``(name, (r, g, b))`` for each colour, in the order shown.
        clear: the class a cleared canvas is filled with.
        eraser: the class the eraser paints.
        brush: the class selected at the start.
        free: whether a colour picker is offered beside the classes.
    """

    name: str
    classes: tuple[tuple[str, tuple[int, int, int]], ...]
    clear: str
    eraser: str
    brush: str
    free: bool = False

    def colour(self, name: str) -> tuple[int, int, int]:
        """The RGB colour of class ``name``."""
        return dict(self.classes)[name]

    def as_json(self) -> dict:
        """The palette as the page reads it."""
        return {
            "name": self.name,
            "classes": [{"name": n, "rgb": list(c), "hex": "#%02x%02x%02x" % c} for n, c in self.classes],
            "clear": self.clear,
            "eraser": self.eraser,
            "brush": self.brush,
            "free": self.free,
        }


FACADES = Palette(
    "facades",
    (
        ("background", (0, 0, 222)),
        ("facade", (0, 48, 254)),
        ("window", (6, 125, 255)),
        ("door", (5, 205, 255)),
        ("cornice", (42, 249, 230)),
        ("sill", (114, 249, 159)),
        ("balcony", (192, 254, 65)),
        ("blind", (251, 239, 13)),
        ("deco", (254, 159, 9)),
        ("molding", (251, 81, 4)),
        ("pillar", (238, 6, 10)),
        ("shop", (174, 0, 2)),
    ),
    clear="facade",
    eraser="facade",
    brush="window",
)
"""The 12 CMP Facades classes, with the colours measured in the pix2pix facades label maps."""

EDGES = Palette("edges", (("edge", (0, 0, 0)), ("paper", (255, 255, 255))), clear="paper", eraser="paper", brush="edge")
"""Black strokes on white, as the HED edge maps of edges2shoes and edges2handbags."""

FREE = Palette(
    "free", (("black", (0, 0, 0)), ("white", (255, 255, 255))), clear="white", eraser="white", brush="black", free=True
)
"""Black, white and a colour picker."""

PALETTES = {p.name: p for p in (FACADES, EDGES, FREE)}


def palette_for(*names: str) -> Palette:
    """The palette that fits a model, guessed from its names (source, registry name, zoo dataset).

    ``facades`` in any name gives the CMP palette, ``edges`` black on white; anything else the
    free palette.
    """
    text = " ".join(names).lower()
    if "facade" in text:
        return FACADES
    if "edges" in text:
        return EDGES
    return FREE


# CMP classes of the embedded synthetic facades' layout classes (imgtrans.data.synthetic):
# sky, wall, cornice, window, balcony, door, shop.
_SYNTHETIC_TO_CMP = ("background", "facade", "cornice", "window", "balcony", "door", "shop")


def drawn_facade(size: int = 256, seed: int = 0) -> Image.Image:
    """A procedurally drawn CMP label map: floors of windows with sills, balconies, a door and a shop.

    The layout is that of the embedded synthetic facades, painted with the CMP palette, with a
    sill under every window: no dataset file is needed, so the page always has an example.
    """
    from imgtrans.data.synthetic import WALL, WINDOW, facade_layout

    labels = facade_layout(np.random.default_rng([seed, 0]), size)
    colours = np.array([FACADES.colour(name) for name in _SYNTHETIC_TO_CMP], dtype=np.uint8)
    image = colours[labels]
    below_window = np.zeros_like(labels, dtype=bool)
    below_window[1:] = labels[:-1] == WINDOW
    sill = below_window & (labels == WALL)
    for _ in range(max(1, size // 128)):  # sills a couple of pixels thick
        grown = np.zeros_like(sill)
        grown[1:] = sill[:-1]
        sill |= grown & (labels == WALL)
    image[sill] = FACADES.colour("sill")
    return Image.fromarray(image)


def example_image(palette: Palette, size: int = 256) -> tuple[Image.Image, str]:
    """The canvas's starting picture and where it comes from.

    For facades, the first label map of the downloaded test split (``imgtrans data download
    facades``) when there is one, else [drawn_facade][imgtrans.app.palettes.drawn_facade]; for edges,
    the first edge map of a downloaded edges2shoes or edges2handbags validation split, else a
    blank sheet; a blank sheet for the free palette.
    """
    from imgtrans.images import image_files, read_image
    from imgtrans.data.downloads import dataset_dir, is_downloaded

    candidates = {"facades": [("facades", "test", "right")], "edges": [("edges2shoes", "val", "left"),
                                                                      ("edges2handbags", "val", "left")]}  # fmt: skip
    for name, split, half in candidates.get(palette.name, []):
        folder = dataset_dir(name) / split
        if is_downloaded(name) and folder.is_dir() and (files := image_files(folder)):
            ab = read_image(files[0], 3)
            w, h = ab.size
            image = ab.crop((w // 2, 0, 2 * (w // 2), h) if half == "right" else (0, 0, w // 2, h))
            return image, f"{name}/{split}/{files[0].name} ({half} half)"
    if palette is FACADES:
        return drawn_facade(size), "a facade drawn with the CMP palette (download facades for a real one)"
    return Image.new("RGB", (size, size), palette.colour(palette.clear)), "a blank sheet"


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG."""
    buffer = BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
