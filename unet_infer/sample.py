"""Synthetic Carvana: studio photos of cars and their masks, in the Kaggle data set's exact layout.

Makes ``DIR/train/<carid>_<NN>.jpg`` (RGB JPEG, 1918 x 1280 by default) and
``DIR/train_masks/<carid>_<NN>_mask.gif`` (palette GIF; pixel values 0 = background, 1 = car),
NN = 01..16, ``<carid>`` = 12 lowercase hex digits, so that every stage can run and be scored
without the real data.

Each car is a small 3-D model of random shape (sedan, hatchback or SUV) and paint: a body with
wheel arches, a cabin with windows, wheels with rims, lights and door seams. It turns on a studio
turntable in 22.5 degree steps (view 01 faces the camera, 05 shows its side, 09 its back) and is
drawn in perspective, with 2x supersampling, in front of a light grey wall and floor with smooth
gradients, over a soft floor shadow that is not part of the mask, with sensor noise and JPEG
compression (quality 85-95). The mask is the car's silhouette (body, cabin, windows, wheels) as
drawn, before noise and compression. Paints include whites and greys close to the studio's own
colours, windows are dark and so is the shadow: a colour threshold cannot solve it.

Everything is a pure function of the arguments: the same seed gives byte-identical files, whatever
the number of workers. Existing files of the same names are overwritten; nothing is deleted.

Example:
    python3 -m unet_infer.sample --out ./carvana --cars 4 --seed 0
"""

import argparse
import colorsys
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .errors import HelpFormatter, UserError, run_cli
from .formats import atomic_write_bytes
from .preprocess import check_workers, default_workers, parallel_map
from .progress import set_quiet

MAX_VIEWS = 16
MIN_SIZE = 64
VIEW_STEP_DEG = 360.0 / MAX_VIEWS
SUPERSAMPLE = 2          # the car is drawn at this multiple of the image size, then averaged down
SHADOW_SCALE = 4         # the studio and its shadows are computed at 1/SHADOW_SCALE resolution
MASK_PALETTE = [0, 0, 0, 255, 255, 255]

SKY = np.array([236.0, 238.0, 242.0])            # the studio, as glossy surfaces reflect it
LIGHT = np.array([-0.3, -0.5, 0.8]) / np.linalg.norm([-0.3, -0.5, 0.8])   # world frame, z up
TYRE = (np.array([30.0, 30.0, 32.0]), 0.08)      # (colour, gloss)
LINER = (np.array([22.0, 22.0, 24.0]), 0.0)      # inside of the wheel arches
ARCH_GAP = 0.04          # arch radius minus wheel radius, metres
TYRE_WIDTH = 0.22
WHEEL_SIDES = 32
_NORMAL_QUANTILES = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)])


@dataclass(frozen=True)
class Car:
    """One synthetic car and its photo session. Lengths in metres, x forward, y left, z up."""

    seed: int
    index: int
    car_id: str
    kind: str
    length: float
    width: float
    height: float
    clearance: float
    belt: float              # top of the body's flanks, where the cabin starts
    nose: float              # height of the hood's front edge
    tail: float              # height of the boot's rear edge
    wheel_radius: float
    axle_front: float
    axle_rear: float
    windshield_base: float   # x of the cabin's four corners, and of the B-pillar
    roof_front: float
    roof_rear: float
    rear_window_base: float
    b_pillar: float
    spokes: int
    paint: tuple
    gloss: float
    glass: tuple
    rim: tuple
    headlight_width: float
    wall: float              # studio brightness (0-255) of the wall and of the floor
    floor: float
    tint: tuple              # per-channel factor of the studio light
    horizon: float           # wall/floor transition, fraction of the height
    horizon_blur: float
    vignette: float
    turntable: float         # brightness change of the turntable disc (fraction)
    turntable_radius: float
    scale: float             # the car's length as a fraction of the image width, side on
    centre: tuple            # where the car's middle lands, fractions of width and height
    elevation: float         # camera, degrees above the horizontal
    distance: float
    yaw: float               # turntable offset, degrees
    shadow: float            # darkness of the floor shadow (0-1)
    noise: float             # sensor noise, grey levels
    quality: int             # JPEG quality


def _paint(rng):
    """A car paint (RGB 0-255) drawn from a Carvana-like mix: many whites, greys and blacks."""
    kind = rng.choice(6, p=[0.2, 0.18, 0.12, 0.17, 0.25, 0.08])
    if kind == 0:      # white
        grey, sat, hue = rng.uniform(225, 250), rng.uniform(0, 0.03), rng.uniform()
    elif kind == 1:    # silver
        grey, sat, hue = rng.uniform(160, 215), rng.uniform(0, 0.05), rng.uniform()
    elif kind == 2:    # grey
        grey, sat, hue = rng.uniform(70, 130), rng.uniform(0, 0.06), rng.uniform()
    elif kind == 3:    # black
        grey, sat, hue = rng.uniform(12, 35), rng.uniform(0, 0.1), rng.uniform()
    elif kind == 4:    # a colour
        grey, sat, hue = rng.uniform(75, 215), rng.uniform(0.4, 0.9), rng.uniform()
    else:              # pale, close to the studio
        grey, sat, hue = rng.uniform(190, 240), rng.uniform(0.05, 0.2), rng.uniform()
    return tuple(255 * np.array(colorsys.hsv_to_rgb(hue, sat, grey / 255)))


def make_car(seed, index):
    """The car number ``index`` (from 0) of data set ``seed``: its id, shape, paint and studio."""
    rng = np.random.default_rng([seed, index])
    u = rng.uniform
    car_id = rng.bytes(6).hex()
    kind = ("sedan", "hatch", "suv")[rng.choice(3, p=[0.45, 0.25, 0.3])]
    if kind == "sedan":
        length, width, height = u(4.4, 5.0), u(1.75, 1.88), u(1.38, 1.5)
        clearance, radius, belt = u(0.13, 0.18), u(0.30, 0.34), u(0.85, 0.95)
        overhang_front, overhang_rear = u(0.8, 1.0), u(0.95, 1.15)
        hood, rake = u(0.26, 0.32) * length, u(0.16, 0.2) * length
        deck, rear_rake = u(0.13, 0.18) * length, u(0.13, 0.17) * length
        tail = belt - u(0.0, 0.08)
    elif kind == "hatch":
        length, width, height = u(3.9, 4.4), u(1.70, 1.82), u(1.42, 1.56)
        clearance, radius, belt = u(0.13, 0.18), u(0.29, 0.33), u(0.85, 0.95)
        overhang_front, overhang_rear = u(0.75, 0.9), u(0.6, 0.8)
        hood, rake = u(0.22, 0.27) * length, u(0.17, 0.21) * length
        deck, rear_rake = u(0.03, 0.06) * length, u(0.06, 0.1) * length
        tail = belt - u(0.0, 0.04)
    else:
        length, width, height = u(4.4, 5.0), u(1.82, 1.98), u(1.62, 1.82)
        clearance, radius, belt = u(0.19, 0.26), u(0.35, 0.40), u(0.98, 1.1)
        overhang_front, overhang_rear = u(0.8, 1.0), u(0.8, 1.0)
        hood, rake = u(0.22, 0.27) * length, u(0.12, 0.16) * length
        deck, rear_rake = u(0.02, 0.05) * length, u(0.03, 0.06) * length
        tail = belt - u(0.0, 0.04)
    half = length / 2
    windshield_base = half - hood
    roof_front = windshield_base - rake
    rear_window_base = -half + deck
    roof_rear = rear_window_base + rear_rake
    wall = u(232, 250)
    return Car(
        seed=seed, index=index, car_id=car_id, kind=kind,
        length=length, width=width, height=height, clearance=clearance, belt=belt,
        nose=max(belt - u(0.1, 0.2), clearance + 0.5), tail=tail, wheel_radius=radius,
        axle_front=half - overhang_front, axle_rear=-half + overhang_rear,
        windshield_base=windshield_base, roof_front=roof_front, roof_rear=roof_rear,
        rear_window_base=rear_window_base,
        b_pillar=roof_rear + u(0.4, 0.6) * (roof_front - roof_rear),
        spokes=int(rng.integers(5, 8)),
        paint=_paint(rng), gloss=u(0.2, 0.45),
        glass=tuple(np.array([0.0, 4.0, 9.0]) + u(22, 45)),
        rim=(u(150, 205),) * 3 if u() < 0.65 else (u(35, 80),) * 3,
        headlight_width=u(0.3, 0.42),
        wall=wall, floor=wall - u(8, 30), tint=tuple(1 + u(-0.012, 0.012, 3)),
        horizon=u(0.42, 0.58), horizon_blur=u(0.02, 0.08), vignette=u(0.04, 0.14),
        turntable=u(-0.025, 0.025), turntable_radius=u(2.9, 3.4),
        scale=u(0.6, 0.8), centre=(u(0.45, 0.55), u(0.48, 0.57)),
        elevation=u(7, 14), distance=u(9, 12), yaw=u(-4, 4),
        shadow=u(0.45, 0.7), noise=u(1.5, 3.5), quality=int(rng.integers(85, 96)),
    )


# --- the car as faces -------------------------------------------------------------------------

@dataclass
class _Face:
    """A flat polygon (k x 3 points) with outward ``normal``, colour and gloss, and decals:
    (points, colour, gloss) polygons on it, drawn right after it, visible when it is."""

    points: np.ndarray
    normal: np.ndarray
    colour: np.ndarray
    gloss: float
    decals: tuple = ()
    two_sided: bool = False


def _outward(points, inside):
    """Unit normal of a planar polygon, pointing away from the point ``inside``."""
    p = np.asarray(points, dtype=float)
    q = np.roll(p, -1, axis=0)
    n = np.array([np.sum((p[:, 1] - q[:, 1]) * (p[:, 2] + q[:, 2])),
                  np.sum((p[:, 2] - q[:, 2]) * (p[:, 0] + q[:, 0])),
                  np.sum((p[:, 0] - q[:, 0]) * (p[:, 1] + q[:, 1]))])
    n /= np.linalg.norm(n)
    return n if np.dot(n, p.mean(axis=0) - inside) >= 0 else -n


def _at(xz, y):
    """Points (x, z) of a side outline lifted to 3-D at lateral position ``y``."""
    xz = np.asarray(xz, dtype=float)
    return np.stack([xz[:, 0], np.full(len(xz), y), xz[:, 1]], axis=1)


def _rect_on_edge(p, q, y0, y1, z0, z1):
    """A rectangle y0..y1 x z0..z1 on the body face swept from outline edge p -> q."""

    def x(z):
        return p[0] + (q[0] - p[0]) * (z - p[1]) / (q[1] - p[1])

    return np.array([[x(z0), y0, z0], [x(z0), y1, z0], [x(z1), y1, z1], [x(z1), y0, z1]])


def _arch(car, axle):
    """The wheel arch over ``axle`` (x, z), back to front, from sill height to sill height."""
    r, ra = car.wheel_radius, car.wheel_radius + ARCH_GAP
    t0 = np.arcsin((car.clearance - r) / ra)
    t = np.linspace(np.pi - t0, t0, 10)
    return np.stack([axle + ra * np.cos(t), r + ra * np.sin(t)], axis=1)


def _profile(car):
    """The body's side outline (x, z), counter-clockwise; a tag per edge i -> i+1: "arch"
    (wheel-arch liner), "nose" (the face carrying the headlights), "tail" or ""; and the
    outline's top line (hood, belt, boot), front to back."""
    half, c = car.length / 2, car.clearance
    points, tags = [(-half + 0.12, c + 0.04)], [""]
    for axle in (car.axle_rear, car.axle_front):
        arch = _arch(car, axle)
        points += list(map(tuple, arch))
        tags += ["arch"] * (len(arch) - 1) + [""]
    points += [(half - 0.12, c + 0.04), (half - 0.02, c + 0.18)]
    tags += ["", "nose"]
    top = [(half, car.nose - 0.12), (half - 0.18, car.nose), (car.windshield_base, car.belt),
           (car.rear_window_base, car.belt)]
    if car.rear_window_base > -half + 0.35:      # a boot lid behind the rear window
        top.append((-half + 0.22, car.tail))
    top.append((-half + 0.03, car.tail - 0.1))
    points += top + [(-half, c + 0.2)]
    tags += [""] * (len(top) - 1) + ["tail", ""]
    return np.array(points), tags, np.array(top)


def _arch_top(car, x):
    """Lowest height at x (array) that clears both wheel arches, plus a margin."""
    ra = car.wheel_radius + ARCH_GAP
    top = np.full(np.shape(x), car.clearance + 0.06)
    for axle in (car.axle_front, car.axle_rear):
        inside = np.abs(x - axle) < ra
        lift = car.wheel_radius + np.sqrt(np.maximum(ra**2 - (x - axle) ** 2, 0)) + 0.03
        top = np.where(inside, np.maximum(top, lift), top)
    return top


def _side_decals(car, top, paint, y):
    """Decals of the body flank at lateral position y: a shoulder highlight, seams, handles."""
    half = car.length / 2

    def top_z(x):
        return np.interp(x, top[::-1, 0], top[::-1, 1])

    xs = np.linspace(-half + 0.12, half - 0.2, 32)
    upper = top_z(xs) - 0.06
    lower = np.minimum(np.maximum(top_z(xs) - 0.15, _arch_top(car, xs)), upper)
    band = _at(np.concatenate([np.stack([xs, upper], 1), np.stack([xs, lower], 1)[::-1]]), y)
    decals = [(band, paint + (SKY - paint) * 0.35, car.gloss)]
    seams = [car.windshield_base - 0.05, car.b_pillar]
    if car.kind != "hatch":
        seams.append(car.roof_rear)
    seam_colour = paint * 0.45
    for x in seams:
        z0 = float(_arch_top(car, np.array(x)))
        z1 = top_z(x) - 0.03
        seam = [(x - 0.006, z0), (x + 0.006, z0), (x + 0.006, z1), (x - 0.006, z1)]
        decals.append((_at(seam, y), seam_colour, 0.0))
    for x in seams[1:]:
        z = top_z(x) - 0.2
        handle = [(x + 0.08, z), (x + 0.22, z), (x + 0.22, z + 0.035), (x + 0.08, z + 0.035)]
        decals.append((_at(handle, y), paint * 0.75, car.gloss))
    return tuple(decals)


def _body(car):
    """Faces of the body: (wheel wells: arch liners and the arches' inner walls; outer quads;
    the two flanks)."""
    paint, hw = np.array(car.paint), car.width / 2
    outline, tags, top = _profile(car)
    liners, quads = [], []
    for i, tag in enumerate(tags):
        p, q = outline[i], outline[(i + 1) % len(outline)]
        d = (q - p) / np.linalg.norm(q - p)
        normal = np.array([d[1], 0.0, -d[0]])
        points = np.array([[p[0], hw, p[1]], [q[0], hw, q[1]],
                           [q[0], -hw, q[1]], [p[0], -hw, p[1]]])
        if tag == "arch":
            liners.append(_Face(points, normal, *LINER, two_sided=True))
            continue
        decals = ()
        if tag == "nose":
            span = q[1] - p[1]
            lamp_z = (q[1] - 0.45 * span, q[1] - 0.06 * span)
            lamp = np.array([235.0, 237.0, 240.0])
            inner = hw - 0.06 - car.headlight_width
            grille = _rect_on_edge(p, q, 0.06 - inner, inner - 0.06,
                                   p[1] + 0.1 * span, q[1] - 0.15 * span)
            decals = (
                (grille, np.array([35.0, 35.0, 37.0]), 0.1),
                (_rect_on_edge(p, q, hw - 0.06, inner, *lamp_z), lamp, 1.5),
                (_rect_on_edge(p, q, -hw + 0.06, -inner, *lamp_z), lamp, 1.5),
            )
        elif tag == "tail":
            span = p[1] - q[1]
            lamp_z = (p[1] - 0.4 * span, p[1] - 0.08 * span)
            lamp = np.array([170.0, 20.0, 25.0])
            decals = ((_rect_on_edge(p, q, hw - 0.05, hw - 0.4, *lamp_z), lamp, 0.6),
                      (_rect_on_edge(p, q, -hw + 0.05, -hw + 0.4, *lamp_z), lamp, 0.6))
        quads.append(_Face(points, normal, paint, car.gloss, decals))
    flanks = [_Face(_at(outline, s * hw), np.array([0.0, s, 0.0]), paint, car.gloss,
                    _side_decals(car, top, paint, s * hw)) for s in (1, -1)]
    y_well = hw - 0.05 - TYRE_WIDTH
    for axle in (car.axle_rear, car.axle_front):
        for s in (1, -1):
            liners.append(_Face(_at(_arch(car, axle), s * y_well), np.array([0.0, s, 0.0]), *LINER,
                                two_sided=True))
    return liners, quads, flanks


def _cabin(car):
    """Faces of the cabin (greenhouse): roof, pillars and glass."""
    paint, glass = np.array(car.paint), np.array(car.glass)
    b, h = car.belt, car.height
    w0, w1 = car.width / 2 - 0.05, car.width / 2 - 0.2
    xf0, xf1, xr0, xr1 = car.windshield_base, car.roof_front, car.rear_window_base, car.roof_rear
    inside = np.array([(xf0 + xr0) / 2, 0.0, (b + h) / 2])

    def inset(q, du, dv):
        """The part of quad q (corners in order) inside margins du, dv (fractions)."""
        a, c = q[0] + (q[1] - q[0]) * du, q[0] + (q[1] - q[0]) * (1 - du)
        d, e = q[3] + (q[2] - q[3]) * du, q[3] + (q[2] - q[3]) * (1 - du)
        return np.array([a + (d - a) * dv, c + (e - c) * dv,
                         c + (e - c) * (1 - dv), a + (d - a) * (1 - dv)])

    front = np.array([[xf0, w0, b], [xf0, -w0, b], [xf1, -w1, h], [xf1, w1, h]])
    rear = np.array([[xr0, -w0, b], [xr0, w0, b], [xr1, w1, h], [xr1, -w1, h]])
    roof = np.array([[xr1, w1, h], [xf1, w1, h], [xf1, -w1, h], [xr1, -w1, h]])
    # A diagonal reflection streak across the windshield, in (across, up) fractions of it.
    streak = np.array([[0.62, 0.08], [0.78, 0.08], [0.5, 0.92], [0.34, 0.92]])
    glare = front[0] + streak @ np.stack([front[1] - front[0], front[3] - front[0]])
    faces = [
        _Face(front, _outward(front, inside), paint, car.gloss,
              ((inset(front, 0.04, 0.06), glass, 0.5), (glare, glass + 45, 0.5))),
        _Face(rear, _outward(rear, inside), paint, car.gloss,
              ((inset(rear, 0.06, 0.08), glass, 0.5),)),
        _Face(roof, _outward(roof, inside), paint, car.gloss),
    ]
    for s in (1, -1):
        side = np.array([[xr0, s * w0, b], [xf0, s * w0, b], [xf1, s * w1, h], [xr1, s * w1, h]])

        def at(x, t, s=s):
            """The point of the (leaning) side at x and height fraction t."""
            return [x, s * (w0 + (w1 - w0) * t), b + (h - b) * t]

        # Windows between the A-pillar (front), the B-pillar and the C-pillar (rear).
        a_pillar = [xf0 + (xf1 - xf0) * t - 0.08 for t in (0.1, 0.88)]
        c_pillar = [xr0 + (xr1 - xr0) * t + 0.1 for t in (0.1, 0.88)]
        xb = car.b_pillar
        front_window = [at(xb + 0.05, 0.1), at(a_pillar[0], 0.1),
                        at(a_pillar[1], 0.88), at(xb + 0.05, 0.88)]
        rear_window = [at(c_pillar[0], 0.1), at(xb - 0.05, 0.1),
                       at(xb - 0.05, 0.88), at(c_pillar[1], 0.88)]
        windows = ((np.array(front_window), glass, 0.5), (np.array(rear_window), glass, 0.5))
        faces.append(_Face(side, _outward(side, inside), paint, car.gloss, windows))
    return faces


def _wheel(car, axle, side):
    """Faces of one wheel: the tread, the inner sidewall, and the outer one with its rim."""
    r = car.wheel_radius
    y_out = side * (car.width / 2 - 0.015)
    y_in = y_out - side * TYRE_WIDTH
    centre = np.array([axle, (y_out + y_in) / 2, r])
    a = np.linspace(0, 2 * np.pi, WHEEL_SIDES, endpoint=False)

    def disc(radius, y, angles=a):
        """Points of a circle (or arc) around the axle, in the plane at lateral position y."""
        return np.stack([axle + radius * np.cos(angles), np.full(len(angles), y),
                         r + radius * np.sin(angles)], axis=1)

    out_ring, in_ring = disc(r, y_out), disc(r, y_in)
    faces = []
    for k in range(WHEEL_SIDES):
        j = (k + 1) % WHEEL_SIDES
        tread = np.array([out_ring[k], out_ring[j], in_ring[j], in_ring[k]])
        faces.append(_Face(tread, _outward(tread, centre), *TYRE))
    rim = np.array(car.rim)
    decals = [(disc(0.64 * r, y_out), rim, 0.4), (disc(0.58 * r, y_out), rim * 0.8, 0.3)]
    pitch = 2 * np.pi / car.spokes
    for k in range(car.spokes):
        arc = np.linspace(k * pitch + 0.22 * pitch, (k + 1) * pitch - 0.22 * pitch, 5)
        hole = np.concatenate([disc(0.52 * r, y_out, arc), disc(0.2 * r, y_out, arc[::-1])])
        decals.append((hole, np.array([28.0, 28.0, 30.0]), 0.0))
    decals.append((disc(0.12 * r, y_out), rim * 0.9, 0.4))
    faces.append(_Face(out_ring, np.array([0.0, side, 0.0]), *TYRE, tuple(decals)))
    faces.append(_Face(in_ring, np.array([0.0, -side, 0.0]), *TYRE))
    return centre, faces


# --- drawing ----------------------------------------------------------------------------------

class _Camera:
    """Perspective camera of one view; the car sits on the turntable, turned by ``yaw`` degrees."""

    def __init__(self, car, yaw, centre, width, height):
        theta, phi = np.radians(yaw), np.radians(car.elevation)
        turn = np.array([[np.cos(theta), -np.sin(theta), 0],
                         [np.sin(theta), np.cos(theta), 0],
                         [0, 0, 1]])
        target = np.array([0.0, 0.0, car.height / 2])
        position = target + car.distance * np.array([0.0, -np.cos(phi), np.sin(phi)])
        axes = np.array([[1.0, 0.0, 0.0],                    # right, up, forward (world frame)
                         [0.0, np.sin(phi), np.cos(phi)],
                         [0.0, np.cos(phi), -np.sin(phi)]])
        self.turn = turn
        self.matrix = axes @ turn                       # car frame -> (right, up, forward)
        self.offset = -axes @ position
        self.eye = turn.T @ position                    # camera position in the car frame
        self.focal = car.scale * width * car.distance / car.length
        self.cx, self.cy = centre[0] * width, centre[1] * height

    def project(self, points):
        """Image coordinates (n x 2: x, y) of car-frame points (n x 3)."""
        cam = np.asarray(points) @ self.matrix.T + self.offset
        return np.stack([self.cx + self.focal * cam[:, 0] / cam[:, 2],
                         self.cy - self.focal * cam[:, 1] / cam[:, 2]], axis=1)

    def polygon(self, points, origin=(0, 0), scale=1.0):
        """Flat [x0, y0, x1, y1, ...] of projected points, in a canvas at ``origin``, ``scale`` x."""
        return ((self.project(points) - origin) * scale).ravel().tolist()

    def sees(self, face):
        """Whether the face's outer side looks towards the camera (two-sided faces always do)."""
        return face.two_sided or np.dot(self.eye - face.points.mean(axis=0), face.normal) > 0

    def distance(self, point):
        """Distance from the camera to a car-frame point, for the painter's order."""
        return np.linalg.norm(self.eye - point)

    def shade(self, colour, normal, gloss):
        """RGB of a surface under the studio light: diffuse light plus a reflection of the studio."""
        n = self.turn @ normal
        lit = colour * (0.6 + 0.4 * max(0.0, float(n @ LIGHT)))
        mirror = np.clip(gloss * (0.3 + 0.7 * max(0.0, n[2]) ** 2), 0, 1)
        return tuple(int(c) for c in np.clip(lit + (SKY - lit) * mirror + 0.5, 0, 255))


def _draw_car(car, camera, width, height):
    """The car over its bounding box: (RGBA image with straight alpha, the box's corner (x, y)).

    Drawn at SUPERSAMPLE x the image's resolution and averaged down.
    """
    liners, quads, flanks = _body(car)
    wheels = [_wheel(car, axle, side) for axle in (car.axle_front, car.axle_rear) for side in (1, -1)]
    cabin = _cabin(car)
    every_point = np.concatenate([f.points for f in liners + quads + flanks + cabin]
                                 + [f.points for _, faces in wheels for f in faces])
    corners = camera.project(every_point)
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - 1, 0, (width - 1, height - 1))
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, (x0 + 1, y0 + 1), (width, height))
    origin = (int(x0), int(y0))
    layer = Image.new("RGBA", (int(x1 - x0) * SUPERSAMPLE, int(y1 - y0) * SUPERSAMPLE))
    pen = ImageDraw.Draw(layer)

    def draw(face):
        if camera.sees(face):
            pen.polygon(camera.polygon(face.points, origin, SUPERSAMPLE),
                        fill=camera.shade(face.colour, face.normal, face.gloss) + (255,))
            for points, colour, gloss in face.decals:
                pen.polygon(camera.polygon(points, origin, SUPERSAMPLE),
                            fill=camera.shade(colour, face.normal, gloss) + (255,))

    # Painter's order: arch liners, wheels far to near (the body's arches show them), the body
    # far to near (its flank last), then the cabin, which sits on top of it.
    for face in liners:
        draw(face)
    for _, faces in sorted(wheels, key=lambda w: -camera.distance(w[0])):
        for face in faces:
            draw(face)
    for face in sorted(quads, key=lambda f: -camera.distance(f.points.mean(axis=0))):
        draw(face)
    for face in flanks + cabin:
        draw(face)
    return layer.reduce(SUPERSAMPLE), origin


def _studio(car, camera, width, height):
    """The empty studio with the car's floor shadow, as an RGB image."""
    w, h = -(-width // SHADOW_SCALE), -(-height // SHADOW_SCALE)
    px = 1.0 / SHADOW_SCALE
    metre = camera.focal / car.distance * px                # low-res pixels per metre at the car

    def blurred(shapes, sigma_m):
        """Polygons (car-frame points on the floor) filled and blurred, as floats in [0, 1]."""
        img = Image.new("L", (w, h))
        pen = ImageDraw.Draw(img)
        for points in shapes:
            pen.polygon(camera.polygon(points, scale=px), fill=255)
        img = img.filter(ImageFilter.GaussianBlur(max(sigma_m * metre, 0.5)))
        return np.asarray(img, dtype=np.float32) / 255

    def floor_rect(x0, x1, y0, y1):
        """A rectangle on the floor, in the car frame."""
        return np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], dtype=float)

    half, hw = car.length / 2, car.width / 2
    soft = blurred([floor_rect(-half - 0.25, half + 0.25, -hw - 0.25, hw + 0.25)], 0.3)
    core = blurred([floor_rect(-half + 0.2, half - 0.2, -hw + 0.1, hw - 0.1)], 0.12)
    tyres = blurred([floor_rect(x - 0.3, x + 0.3, s * (hw - 0.02), s * (hw - 0.02 - TYRE_WIDTH))
                     for x in (car.axle_front, car.axle_rear) for s in (1, -1)], 0.05)
    shadow = np.clip(car.shadow * (0.45 * soft + 0.9 * core) + 0.45 * tyres, 0, 0.85)

    circle = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    disc = car.turntable_radius * np.stack([np.cos(circle), np.sin(circle), np.zeros(64)], 1)
    table = blurred([disc], 0.03)

    y = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    x = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / w
    floor = 1 / (1 + np.exp(-(y - car.horizon) / car.horizon_blur))
    wall_light = car.wall * (1 - 0.05 * y)
    floor_light = car.floor * (1 + 0.08 * (y - car.horizon))
    light = (wall_light * (1 - floor) + floor_light * floor) * (1 + car.turntable * table * floor)
    light = light * (1 - car.vignette * (1.3 * (x - 0.5) ** 2 + (y - 0.45) ** 2)) * (1 - shadow)
    rgb = np.clip(light[..., None] * np.array(car.tint) + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").resize((width, height), Image.BILINEAR)


def render_view(car, view, width=1918, height=1280):
    """Photo ``view`` (1..16) of ``car``: (RGB uint8 H x W x 3, mask uint8 H x W of 0/1).

    A pure function of its arguments. The mask is the car as drawn (pixels at least half
    covered), before the shading, noise and JPEG steps that only touch the photo.
    """
    rng = np.random.default_rng([car.seed, car.index, view])
    yaw = -90.0 + (view - 1) * VIEW_STEP_DEG + car.yaw + rng.uniform(-1.5, 1.5)
    centre = np.array(car.centre) + rng.uniform(-0.004, 0.004, 2)
    camera = _Camera(car, yaw, centre, width, height)

    layer, (x0, y0) = _draw_car(car, camera, width, height)
    alpha = layer.getchannel("A")
    inside = np.asarray(alpha) >= 128
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y0:y0 + layer.height, x0:x0 + layer.width] = inside
    paint = layer.convert("RGB")
    rows = np.flatnonzero(inside.any(axis=1))
    if rows.size:
        # The lower body catches less light than the shoulders: blend towards black, up to 20 %.
        top, bottom = rows[0], rows[-1] + 1
        t = np.clip((np.arange(layer.height) - (top + bottom) / 2) / ((bottom - top) / 2), 0, 1)
        dim = np.round(255 * 0.2 * t * t * (3 - 2 * t)).astype(np.uint8)
        paint.paste((0, 0, 0), mask=Image.fromarray(np.repeat(dim[:, None], layer.width, axis=1), "L"))
    photo = _studio(car, camera, width, height)
    photo.paste(paint, (x0, y0), alpha)
    # Gaussian sensor noise (luminance), from a table of normal quantiles indexed by random bytes.
    table = np.clip(np.round(128 + car.noise * _NORMAL_QUANTILES), 0, 255).astype(np.uint8)
    noise = np.take(table, np.frombuffer(rng.bytes(width * height), dtype=np.uint8))
    noise = Image.frombuffer("L", (width, height), noise, "raw", "L", 0, 1)
    photo = ImageChops.add(photo, Image.merge("RGB", (noise,) * 3), 1.0, -128)
    return np.asarray(photo), mask


# --- files ------------------------------------------------------------------------------------

def encode_jpeg(rgb, quality):
    """JPEG bytes of an RGB uint8 array."""
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def encode_mask_gif(mask):
    """Carvana-style mask GIF bytes: palette image whose indices are the mask values (0/1)."""
    img = Image.fromarray(mask.astype(np.uint8), "P")
    img.putpalette(MASK_PALETTE)
    buf = io.BytesIO()
    img.save(buf, "GIF", optimize=False)      # optimize=True may renumber the palette
    return buf.getvalue()


def view_paths(out_dir, car_id, view):
    """(image path, mask path) of one view, in Carvana's layout."""
    stem = f"{car_id}_{view:02d}"
    out_dir = Path(out_dir)
    return out_dir / "train" / f"{stem}.jpg", out_dir / "train_masks" / f"{stem}_mask.gif"


def _write_view(task):
    """Worker: render one view and write its photo and mask."""
    out_dir, seed, index, view, width, height = task
    car = make_car(seed, index)
    rgb, mask = render_view(car, view, width, height)
    image_path, mask_path = view_paths(out_dir, car.car_id, view)
    for path, data in ((image_path, encode_jpeg(rgb, car.quality)), (mask_path, encode_mask_gif(mask))):
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            raise UserError(f"{path}: cannot write ({exc})") from None


def generate(out_dir, cars, seed, views=MAX_VIEWS, width=1918, height=1280, workers=None):
    """Write ``cars`` x ``views`` photos and masks under ``out_dir``; return their (image, mask)
    paths, car by car, view by view. ``workers`` processes (None: one per CPU)."""
    if cars < 1:
        raise UserError(f"--cars must be at least 1, got {cars}")
    if not 1 <= views <= MAX_VIEWS:
        raise UserError(f"--views must be 1..{MAX_VIEWS}, got {views}")
    if width < MIN_SIZE or height < MIN_SIZE:
        raise UserError(f"--width and --height must be at least {MIN_SIZE}, got {width} x {height}")
    if seed < 0:
        raise UserError(f"--seed must be 0 or more, got {seed}")
    workers = check_workers(workers)
    out_dir = Path(out_dir)
    try:
        for sub in ("train", "train_masks"):
            (out_dir / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out_dir}: cannot create the output folders ({exc})") from None
    ids = [make_car(seed, index).car_id for index in range(cars)]
    if len(set(ids)) < cars:
        raise UserError(f"seed {seed} gives two cars the same id; choose another seed")
    tasks = [(str(out_dir), seed, index, view, width, height)
             for index in range(cars) for view in range(1, views + 1)]
    for _ in parallel_map(_write_view, tasks, workers, desc="sample", unit="img"):
        pass
    return [view_paths(out_dir, car_id, view) for car_id in ids for view in range(1, views + 1)]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m unet_infer.sample", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out", required=True, metavar="DIR", default=argparse.SUPPRESS,
                        help="output folder (gets train/ and train_masks/)")
    parser.add_argument("--cars", type=int, default=4, help="number of cars")
    parser.add_argument("--seed", type=int, default=0, help="data set seed (0 or more)")
    parser.add_argument("--views", type=int, default=MAX_VIEWS, help=f"views per car, 1..{MAX_VIEWS}")
    parser.add_argument("--width", type=int, default=1918, help="image width, pixels")
    parser.add_argument("--height", type=int, default=1280, help="image height, pixels")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="worker processes (one per CPU unless given)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    pairs = generate(args.out, args.cars, args.seed, args.views, args.width, args.height, args.workers)
    print(f"wrote {len(pairs)} images to {Path(args.out) / 'train'} "
          f"and {len(pairs)} masks to {Path(args.out) / 'train_masks'}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
