"""The demo's pictures: photographs bundled with scikit-image, and scenes drawn with Pillow.

Each function returns a PIL image; ``demo.content`` scales and encodes it. Deterministic:
the same function always draws the same pixels.
"""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image, ImageDraw, ImageFont


# --- real photographs from scikit-image -----------------------------------------------
# Only images bundled in the scikit-image wheel, which load with no network (checked
# with scikit-image 0.26): astronaut, camera, chelsea, coffee, rocket are used here.
# Others (brain, cells3d, eagle, human_mitosis, kidney, lily, skin, vortex, ...) need a
# pooch download and must not be used.


def skimage_photo(name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        # Imported lazily: scikit-image is slow to import and only the seed needs it.
        from skimage import data

        return Image.fromarray(getattr(data, name)())

    load.__name__ = f"skimage_{name}"
    return load


# --- drawn scenes ---------------------------------------------------------------------
# Drawn at twice the size and scaled down, which smooths the edges (cheap anti-aliasing).
# Coordinates below are in the final 640 x 480 frame.

_WIDTH, _HEIGHT, _SUPERSAMPLE = 640, 480, 2


class _Pen:
    """ImageDraw with coordinates in the final frame, scaled to the supersampled canvas."""

    def __init__(self, background: str):
        self.image = Image.new("RGB", (_WIDTH * _SUPERSAMPLE, _HEIGHT * _SUPERSAMPLE), background)
        self.draw = ImageDraw.Draw(self.image)

    @staticmethod
    def _s(values):
        return [v * _SUPERSAMPLE for v in values]

    def rect(self, box, fill=None, outline=None, width=1, radius=0):
        self.draw.rounded_rectangle(
            self._s(box), radius=radius * _SUPERSAMPLE, fill=fill, outline=outline, width=width * _SUPERSAMPLE
        )

    def ellipse(self, box, fill=None, outline=None, width=1):
        self.draw.ellipse(self._s(box), fill=fill, outline=outline, width=width * _SUPERSAMPLE)

    def polygon(self, points, fill=None, outline=None):
        self.draw.polygon([tuple(self._s(p)) for p in points], fill=fill, outline=outline)

    def line(self, points, fill, width=1):
        self.draw.line([tuple(self._s(p)) for p in points], fill=fill, width=width * _SUPERSAMPLE, joint="curve")

    def arc(self, box, start, end, fill, width=1):
        self.draw.arc(self._s(box), start, end, fill=fill, width=width * _SUPERSAMPLE)

    def text(self, xy, text, fill, size):
        font = ImageFont.load_default(size=size * _SUPERSAMPLE)
        self.draw.text(tuple(self._s(xy)), text, fill=fill, font=font, anchor="mm")

    def person(self, x, feet_y, height, shirt, trousers="#34495e", skin="#e0ac69", hair="#4a3728"):
        """A simple standing figure, centred on x, feet at feet_y."""
        head = height * 0.18
        body_top = feet_y - height + head
        hip = feet_y - height * 0.42
        self.line([(x - height * 0.07, hip), (x - height * 0.09, feet_y)], trousers, max(2, int(height * 0.08)))
        self.line([(x + height * 0.07, hip), (x + height * 0.09, feet_y)], trousers, max(2, int(height * 0.08)))
        self.rect(
            (x - height * 0.13, body_top, x + height * 0.13, hip + height * 0.04),
            fill=shirt,
            radius=int(height * 0.05),
        )
        self.ellipse((x - head / 2, body_top - head, x + head / 2, body_top), fill=skin)
        self.arc((x - head / 2, body_top - head, x + head / 2, body_top), 180, 360, hair, max(2, int(head * 0.25)))

    def finish(self) -> Image.Image:
        return self.image.resize((_WIDTH, _HEIGHT), Image.Resampling.LANCZOS)


def draw_street_crossing() -> Image.Image:
    pen = _Pen("#bfe3f5")
    # Far side: buildings with windows, then the pavement.
    for left, top, colour in [(0, 60, "#c98e6b"), (150, 30, "#b5b8bd"), (330, 80, "#d9c49a"), (480, 45, "#a7795e")]:
        pen.rect((left, top, left + 160, 210), fill=colour)
        for wx in range(left + 18, left + 150, 38):
            for wy in range(top + 18, 190, 42):
                pen.rect((wx, wy, wx + 20, wy + 26), fill="#eaf6fb", outline="#6b6b6b")
    pen.rect((0, 200, 640, 235), fill="#c8c8c8")
    # Road with lane marking and a zebra crossing across it.
    pen.rect((0, 235, 640, 400), fill="#505458")
    for x in range(0, 640, 60):
        if not 230 < x < 410:
            pen.rect((x, 314, x + 34, 320), fill="#f2d64b")
    for y in range(242, 396, 22):
        pen.rect((250, y, 400, y + 12), fill="#f4f4f4")
    pen.rect((0, 400, 640, 480), fill="#c8c8c8")
    pen.line([(0, 400), (640, 400)], "#8a8a8a", 3)
    # Pedestrian light on the near kerb.
    pen.rect((418, 300, 424, 460), fill="#3a3a3a")
    pen.rect((408, 272, 434, 318), fill="#222222", radius=4)
    pen.ellipse((413, 277, 429, 293), fill="#2ecc71")
    pen.ellipse((413, 297, 429, 313), fill="#5b1a1a")
    # Cars approaching the crossing from both sides.
    for left, top, body in [(40, 262, "#c0392b"), (500, 328, "#2e6fb5")]:
        pen.rect((left, top + 14, left + 130, top + 52), fill=body, radius=10)
        roof = [(left + 28, top + 16), (left + 44, top - 8), (left + 96, top - 8), (left + 112, top + 16)]
        window = [(left + 38, top + 14), (left + 50, top - 3), (left + 90, top - 3), (left + 102, top + 14)]
        pen.polygon(roof, fill=body)
        pen.polygon(window, fill="#cfe8f5")
        pen.ellipse((left + 14, top + 40, left + 40, top + 66), fill="#1b1b1b")
        pen.ellipse((left + 92, top + 40, left + 118, top + 66), fill="#1b1b1b")
    # A small child halfway across, with a school bag.
    pen.person(325, 348, 70, shirt="#f39c12", trousers="#2c3e50")
    pen.rect((334, 300, 346, 322), fill="#8e44ad", radius=3)
    return pen.finish()


def draw_kitchen_stove() -> Image.Image:
    pen = _Pen("#f3ead8")
    # Tiled wall and a range hood.
    for x in range(0, 640, 40):
        pen.line([(x, 0), (x, 250)], "#e2d6bd", 1)
    for y in range(0, 250, 40):
        pen.line([(0, y), (640, y)], "#e2d6bd", 1)
    pen.polygon([(210, 0), (430, 0), (470, 70), (170, 70)], fill="#9aa3ab")
    # Counters either side of the stove.
    pen.rect((0, 250, 170, 480), fill="#8d6e53")
    pen.rect((470, 250, 640, 480), fill="#8d6e53")
    pen.rect((0, 240, 170, 256), fill="#d8d2c4")
    pen.rect((470, 240, 640, 256), fill="#d8d2c4")
    for left in (15, 485):
        pen.rect((left, 280, left + 140, 460), outline="#6b523d", width=3)
        pen.rect((left + 60, 300, left + 80, 306), fill="#d0c0a0")
    # Stove: top, knobs, oven door.
    pen.rect((170, 236, 470, 480), fill="#e8e8e8", outline="#9a9a9a", width=2)
    pen.rect((170, 226, 470, 250), fill="#3a3a3a")
    for x in (205, 265, 375, 435):
        pen.ellipse((x - 11, 262, x + 11, 284), fill="#3a3a3a")
        pen.line([(x, 264), (x, 273)], "#e8e8e8", 2)
    pen.rect((195, 300, 445, 455), fill="#2f2f2f", radius=6)
    pen.rect((215, 318, 425, 405), fill="#4a4a4a", radius=4)
    pen.rect((240, 306, 400, 314), fill="#bdbdbd", radius=3)
    # Blue flame under a steaming pot; the handle sticks out over the front edge.
    for dx in range(-40, 41, 10):
        pen.polygon([(290 + dx - 5, 228), (290 + dx, 212), (290 + dx + 5, 228)], fill="#3d7cf2")
    pen.rect((220, 130, 360, 222), fill="#b0b7bf", outline="#7f8891", width=3, radius=8)
    pen.rect((210, 122, 370, 136), fill="#8f98a1", radius=4)
    pen.rect((360, 160, 450, 172), fill="#2b2b2b", radius=5)
    for x in (250, 290, 330):
        pen.arc((x - 14, 40, x + 14, 80), 90, 270, "#ffffff", 4)
        pen.arc((x - 14, 80, x + 14, 120), 270, 90, "#ffffff", 4)
    return pen.finish()


def draw_swimming_pool() -> Image.Image:
    pen = _Pen("#eadcc0")
    # Paved deck around the pool.
    for x in range(0, 640, 48):
        pen.line([(x, 0), (x, 480)], "#d8c8a8", 2)
    for y in range(0, 480, 48):
        pen.line([(0, y), (640, y)], "#d8c8a8", 2)
    pen.rect((60, 70, 580, 420), fill="#2f9fd8", outline="#ffffff", width=8, radius=6)
    # Lane ropes and ripples.
    for y in (157, 245, 333):
        for x in range(72, 570, 18):
            pen.ellipse((x, y - 4, x + 10, y + 6), fill="#e74c3c" if (x // 18) % 2 else "#ffffff")
    for x, y in [(140, 110), (300, 200), (470, 290), (200, 370), (420, 120)]:
        pen.arc((x - 24, y - 6, x + 24, y + 14), 200, 340, "#a9def5", 3)
    # A ladder into the pool on the near edge.
    for rail_x in (480, 516):
        pen.line([(rail_x, 440), (rail_x, 400), (rail_x + 6, 382)], "#c0c7cc", 6)
    for y in (392, 404, 416):
        pen.line([(482, y), (516, y)], "#c0c7cc", 4)
    # Children swimming: heads and arms above the water.
    for x, y, cap in [(230, 290, "#f1c40f"), (360, 205, "#e84393"), (150, 200, "#27ae60")]:
        pen.ellipse((x - 14, y - 14, x + 14, y + 14), fill="#e0ac69")
        pen.arc((x - 14, y - 14, x + 14, y + 14), 180, 360, cap, 8)
        pen.line([(x - 14, y + 8), (x - 36, y - 6)], "#e0ac69", 6)
        pen.line([(x + 14, y + 8), (x + 36, y - 6)], "#e0ac69", 6)
    # Life ring and a "no diving" style depth mark on the deck.
    pen.ellipse((585, 200, 635, 250), fill="#e74c3c")
    pen.ellipse((600, 215, 620, 235), fill="#eadcc0")
    pen.text((110, 445), "1.2 m", "#2c3e50", 18)
    return pen.finish()


def draw_playground() -> Image.Image:
    pen = _Pen("#bfe3f5")
    pen.ellipse((540, 20, 610, 90), fill="#f9d71c")
    pen.rect((0, 300, 640, 480), fill="#7cc46a")
    for x, y in [(40, 230), (600, 240)]:
        pen.rect((x - 8, y, x + 8, y + 80), fill="#7a5230")
        pen.ellipse((x - 45, y - 75, x + 45, y + 15), fill="#3f8f3a")
    # Swing set (A-frame) with one child on a swing.
    pen.line([(90, 400), (130, 170), (170, 400)], "#c0392b", 8)
    pen.line([(270, 400), (310, 170), (350, 400)], "#c0392b", 8)
    pen.line([(125, 172), (315, 172)], "#c0392b", 10)
    for x in (175, 255):
        pen.line([(x, 175), (x, 330)], "#555555", 3)
        pen.line([(x + 30, 175), (x + 30, 330)], "#555555", 3)
        pen.rect((x - 4, 328, x + 34, 336), fill="#2c3e50")
    pen.person(270, 355, 70, shirt="#3498db", trousers="#2c3e50")
    # Slide: ladder on the left, chute down to the right.
    pen.line([(430, 410), (440, 230)], "#7f8c8d", 6)
    pen.line([(465, 410), (470, 230)], "#7f8c8d", 6)
    for y in range(250, 410, 26):
        pen.line([(435, y), (467, y)], "#7f8c8d", 4)
    pen.rect((432, 222, 480, 234), fill="#f39c12")
    pen.polygon([(476, 222), (490, 228), (610, 405), (590, 412)], fill="#f1c40f")
    # Sandbox and a bench for the grown-ups.
    pen.rect((60, 420, 250, 470), fill="#e8d08f", outline="#8e6b3e", width=6)
    pen.rect((330, 440, 410, 448), fill="#8e6b3e")
    pen.rect((330, 424, 410, 432), fill="#8e6b3e")
    pen.rect((336, 448, 342, 470), fill="#5b4327")
    pen.rect((398, 448, 404, 470), fill="#5b4327")
    return pen.finish()


def draw_pharmacy_counter() -> Image.Image:
    pen = _Pen("#eef3f1")
    # Shelves of medicine boxes behind the counter.
    box_colours = ["#e74c3c", "#3498db", "#f1c40f", "#2ecc71", "#9b59b6", "#e67e22", "#ecf0f1"]
    for row, y in enumerate((110, 170, 230)):
        pen.rect((20, y + 40, 620, y + 48), fill="#a58c6f")
        for i, x in enumerate(range(30, 600, 34)):
            if 250 < x < 390 and row == 0:
                continue  # room for the sign
            pen.rect((x, y + 8, x + 26, y + 40), fill=box_colours[(i + row * 3) % len(box_colours)], outline="#7f8c8d")
    # Green cross and the "PHARMACY" sign.
    pen.rect((265, 20, 375, 100), fill="#ffffff", outline="#27ae60", width=3, radius=8)
    pen.rect((305, 32, 335, 88), fill="#27ae60")
    pen.rect((285, 45, 355, 75), fill="#27ae60")
    pen.text((320, 135), "PHARMACY", "#1e8449", 22)
    # Pharmacist behind the counter (white coat).
    pen.person(430, 380, 190, shirt="#fdfefe", trousers="#fdfefe", skin="#c68642", hair="#1b1b1b")
    # Counter.
    pen.rect((200, 330, 640, 480), fill="#5d8aa8")
    pen.rect((190, 318, 640, 336), fill="#d5dbdb")
    pen.rect((480, 296, 540, 320), fill="#3498db", outline="#1f618d")
    # Elderly customer in front: grey hair, slight stoop, walking stick.
    x, feet = 140, 470
    pen.line([(x - 12, 360), (x - 14, feet)], "#6d4c41", 14)
    pen.line([(x + 10, 360), (x + 14, feet)], "#6d4c41", 14)
    pen.polygon([(x - 26, 240), (x + 30, 232), (x + 36, 372), (x - 30, 372)], fill="#7d6608")
    pen.ellipse((x - 4, 185, x + 42, 231), fill="#f1c27d")
    pen.arc((x - 4, 185, x + 42, 231), 150, 330, "#d7dbdd", 12)
    pen.line([(x + 30, 270), (x + 62, 330)], "#7d6608", 12)
    pen.line([(x + 64, 330), (x + 70, feet)], "#4e342e", 6)
    pen.arc((x + 52, 318, x + 76, 342), 180, 360, "#4e342e", 6)
    return pen.finish()
