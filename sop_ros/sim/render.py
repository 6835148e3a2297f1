"""Camera images of the simulated table, drawn with OpenCV from a :class:`WorldState`.

``head`` looks straight down on the whole table (letterboxed to the image's
aspect ratio); ``wrist`` looks down on a square of ``wrist_fov_m`` centred on
the gripper. Images are RGB uint8. Drawing uses fixed-point coordinates (4
fractional bits) so small images still place objects to a fraction of a pixel.
A :class:`Renderer` holds no per-episode state and may be shared by threads
that each pass their own world.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from sop_ros.core.errors import ConfigError
from sop_ros.sim.tasks import BoxLayout, ClothLayout, GroceryLayout
from sop_ros.sim.world import TABLE_M, Vec, WorldState

__all__ = ["Renderer"]

_SHIFT = 4
_ONE = 1 << _SHIFT
Colour = tuple[int, int, int]

FLOOR = (45, 45, 50)
GRIPPER_PALM = (60, 60, 70)
GRIPPER_FINGER = (25, 25, 25)
PRODUCTS = ((40, 90, 200), (50, 150, 60), (230, 150, 30), (130, 60, 160))


class _Canvas:
    """An image plus the table-to-pixel transform of one camera."""

    def __init__(self, image: np.ndarray, scale: float, origin: tuple[float, float], line: int) -> None:
        self.image = image
        self.scale = scale
        self.origin = origin
        self.line = line

    def px(self, points: Sequence[Vec]) -> np.ndarray:
        ox, oy = self.origin
        pts = [((ox + x * self.scale) * _ONE, (oy - y * self.scale) * _ONE) for x, y in points]
        return np.round(np.array(pts)).astype(np.int32)

    def polygon(self, points: Sequence[Vec], colour: Colour) -> None:
        cv2.fillPoly(self.image, [self.px(points)], colour, self.line, _SHIFT)

    def rect(self, centre: Vec, half_x: float, half_y: float, colour: Colour) -> None:
        x, y = centre
        corners = (
            (x - half_x, y - half_y),
            (x + half_x, y - half_y),
            (x + half_x, y + half_y),
            (x - half_x, y + half_y),
        )
        self.polygon(corners, colour)

    def circle(self, centre: Vec, radius_m: float, colour: Colour) -> None:
        ((cx, cy),) = self.px([centre])
        cv2.circle(
            self.image, (int(cx), int(cy)), round(radius_m * self.scale * _ONE), colour, -1, self.line, _SHIFT
        )


def _draw_grocery(canvas: _Canvas, world: WorldState) -> None:
    layout = world.layout
    assert isinstance(layout, GroceryLayout)
    canvas.rect((TABLE_M / 2, layout.slots[0][1]), 0.235, 0.04, (120, 85, 50))
    for index, (slot, product) in enumerate(zip(layout.slots, layout.products, strict=True)):
        colour = (235, 235, 225) if index == layout.empty_slot else PRODUCTS[product]
        canvas.rect(slot, 0.03, 0.03, colour)
    canvas.rect(world.obj, 0.025, 0.025, (220, 40, 40))


def _side(p: Vec, a: Vec, b: Vec) -> float:
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def _draw_cloth(canvas: _Canvas, world: WorldState) -> None:
    layout = world.layout
    assert isinstance(layout, ClothLayout)
    b, c, d, a = layout.corner_b, layout.goal, layout.corner_d, world.obj
    canvas.polygon((b, c, d), (235, 205, 95))
    # Once corner A crosses the fold line BD the cloth shows its darker back side.
    folded = _side(a, b, d) * _side(c, b, d) > 0
    canvas.polygon((b, a, d), (190, 150, 55) if folded else (235, 205, 95))
    # C's mark shows through the folded flap: the policy must see where the fold ends.
    canvas.circle(c, 0.016, (40, 60, 140))
    canvas.circle(a, 0.022, (210, 30, 30))


def _draw_box(canvas: _Canvas, world: WorldState) -> None:
    layout = world.layout
    assert isinstance(layout, BoxLayout)
    n, h, half = layout.flap_normal, layout.hinge, layout.half_m
    canvas.rect(layout.goal, half, half, (150, 100, 55))
    canvas.rect(layout.goal, half - 0.008, half - 0.008, (105, 65, 30))
    # The flap is a rectangle from the hinge outward; shut, it lies folded inside the box.
    depth = world.flap_m if world.flap_m > 0.0 else -0.25 * layout.flap_length_m
    w = layout.flap_width_m / 2
    t = (-n[1], n[0])
    tip = (h[0] + n[0] * depth, h[1] + n[1] * depth)
    corners = (
        (h[0] + t[0] * w, h[1] + t[1] * w),
        (tip[0] + t[0] * w, tip[1] + t[1] * w),
        (tip[0] - t[0] * w, tip[1] - t[1] * w),
        (h[0] - t[0] * w, h[1] - t[1] * w),
    )
    canvas.polygon(corners, (195, 145, 85))
    canvas.rect(world.obj, 0.05, 0.05, (45, 120, 60))
    canvas.rect(world.obj, 0.042, 0.042, (70, 170, 90))


def _draw_gripper(canvas: _Canvas, world: WorldState) -> None:
    x, y = world.ee
    canvas.circle(world.ee, 0.012, GRIPPER_PALM)
    # The fingers spread wider than the true opening so a 64 px image still shows it.
    spread = 0.01 + 0.4 * world.gripper_m
    for sign in (-1.0, 1.0):
        canvas.rect((x + sign * spread, y), 0.004, 0.012, GRIPPER_FINGER)


# Layout type -> (table colour, drawing of the task's objects); tasks differ in look as well as layout.
_DRAW: dict[type, tuple[Colour, Callable[[_Canvas, WorldState], None]]] = {
    GroceryLayout: ((185, 185, 175), _draw_grocery),
    ClothLayout: ((165, 190, 215), _draw_cloth),
    BoxLayout: ((205, 175, 125), _draw_box),
}


class Renderer:
    """Draws camera images of a world.

    Args:
        width_px: Image width.
        height_px: Image height.
        wrist_fov_m: Side of the table square the wrist camera sees.
        anti_alias: Smooth edges (slower).
    """

    def __init__(
        self, *, width_px: int, height_px: int, wrist_fov_m: float, anti_alias: bool = False
    ) -> None:
        self.width_px = width_px
        self.height_px = height_px
        self.wrist_fov_m = wrist_fov_m
        self._line = cv2.LINE_AA if anti_alias else cv2.LINE_8
        # Copying a ready image is several times faster than filling one with a colour.
        self._floor = np.empty((height_px, width_px, 3), dtype=np.uint8)
        self._floor[:] = FLOOR
        self._floor.flags.writeable = False

    def render(self, world: WorldState, camera: str) -> np.ndarray:
        """Return the RGB uint8 image (height, width, 3) that ``camera`` sees of ``world``."""
        w, h = self.width_px, self.height_px
        side = min(w, h)
        if camera == "head":
            scale = side / TABLE_M
            origin = ((w - side) / 2, (h + side) / 2)
        elif camera == "wrist":
            scale = side / self.wrist_fov_m
            origin = (w / 2 - world.ee[0] * scale, h / 2 + world.ee[1] * scale)
        else:
            raise ConfigError(f"unknown camera {camera!r}; cameras: head, wrist")
        table, draw = _DRAW[type(world.layout)]
        image = self._floor.copy()
        # The table is an axis-aligned square: an integer rectangle fill is much faster
        # than a polygon at high resolution (the wrist camera sees it magnified).
        x0, x1 = (round(min(max(v, -1), w)) for v in (origin[0], origin[0] + TABLE_M * scale))
        y0, y1 = (round(min(max(v, -1), h)) for v in (origin[1] - TABLE_M * scale, origin[1]))
        cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), table, -1)
        canvas = _Canvas(image, scale, origin, self._line)
        draw(canvas, world)
        _draw_gripper(canvas, world)
        return image
