"""The registry of data set layouts: `LAYOUTS`, one `Layout` (`va2att.data.layout`) per layout.

    affectnet      AffectNet's CSV file lists (Manually_Annotated_file_lists/)
    affwild2       Aff-Wild2 as distributed for the ABAW challenges (cropped_aligned/ + Annotations/)
    affectnet-npy  AffectNet's second distribution (train_set/annotations/<id>_exp.npy, ...)

Preparation, `--data ROOT` and evaluation look layouts up here and never branch on a layout's
name. Adding a layout is its own module and one line in `LAYOUTS`; from outside the package (a
test, a user's own data set) `register(layout)` adds one. `detect_layout(path)` asks the layouts
in registry order.
"""

from __future__ import annotations

from pathlib import Path

from va2att.data import affectnet, affectnet_npy, affwild2
from va2att.data.layout import Layout

LAYOUTS: dict[str, Layout] = {
    affectnet.LAYOUT.name: affectnet.LAYOUT,
    affwild2.LAYOUT.name: affwild2.LAYOUT,  # before affectnet-npy: checked by its own folders
    affectnet_npy.LAYOUT.name: affectnet_npy.LAYOUT,
}


def register(layout: Layout) -> Layout:
    """Add `layout` to `LAYOUTS` (after the others); returns it. A name in use is refused."""
    if not isinstance(layout, Layout) or not layout.name:
        raise ValueError(f"register() takes a Layout with a name. Received: {layout!r}")
    if layout.name in LAYOUTS:
        raise ValueError(f"a layout named {layout.name!r} is already registered")
    LAYOUTS[layout.name] = layout
    return layout


def get(name: str) -> Layout:
    """The layout called `name` (ValueError naming the known ones otherwise)."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown data set layout {name!r}: known layouts are {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def detect_layout(path) -> Layout | None:
    """The first layout whose `is_root(path)` holds, or None."""
    path = Path(path)
    return next((layout for layout in LAYOUTS.values() if layout.is_root(path)), None)


def root_hints() -> str:
    """What marks a root of each layout, for the message of an unrecognised folder."""
    return "; ".join(f"{layout.title}: {layout.root_hint}" for layout in LAYOUTS.values())
