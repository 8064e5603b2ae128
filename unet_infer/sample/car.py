"""One synthetic car and its studio session: shape, paint, camera pose and photo settings, all
drawn from ``numpy.random.default_rng([seed, index])`` (see ``make_car``)."""

import colorsys
from dataclasses import dataclass

import numpy as np

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


# Carvana-like paints, many whites, greys and blacks: (odds, grey level 0-255, saturation) ranges.
PAINTS = ((0.2, (225, 250), (0, 0.03)),     # white
          (0.18, (160, 215), (0, 0.05)),    # silver
          (0.12, (70, 130), (0, 0.06)),     # grey
          (0.17, (12, 35), (0, 0.1)),       # black
          (0.25, (75, 215), (0.4, 0.9)),    # a colour
          (0.08, (190, 240), (0.05, 0.2)))  # pale, close to the studio


def _paint(rng):
    """A car paint (RGB 0-255) drawn from PAINTS."""
    _, grey, sat = PAINTS[rng.choice(len(PAINTS), p=[odds for odds, _, _ in PAINTS])]
    grey, sat, hue = rng.uniform(*grey), rng.uniform(*sat), rng.uniform()
    return tuple(255 * np.array(colorsys.hsv_to_rgb(hue, sat, grey / 255)))


# Each kind's ranges, drawn in this order: length, width, height, ground clearance, wheel radius,
# belt line (m); front and rear overhang (m); hood, windshield rake, rear deck and rear-window rake
# (fractions of the length); how far the tail sits below the belt line (m).
SHAPES = {
    "sedan": ((4.4, 5.0), (1.75, 1.88), (1.38, 1.5), (0.13, 0.18), (0.30, 0.34), (0.85, 0.95), (0.8, 1.0),
              (0.95, 1.15), (0.26, 0.32), (0.16, 0.2), (0.13, 0.18), (0.13, 0.17), (0.0, 0.08)),
    "hatch": ((3.9, 4.4), (1.70, 1.82), (1.42, 1.56), (0.13, 0.18), (0.29, 0.33), (0.85, 0.95), (0.75, 0.9),
              (0.6, 0.8), (0.22, 0.27), (0.17, 0.21), (0.03, 0.06), (0.06, 0.1), (0.0, 0.04)),
    "suv": ((4.4, 5.0), (1.82, 1.98), (1.62, 1.82), (0.19, 0.26), (0.35, 0.40), (0.98, 1.1), (0.8, 1.0),
            (0.8, 1.0), (0.22, 0.27), (0.12, 0.16), (0.02, 0.05), (0.03, 0.06), (0.0, 0.04)),
}


def make_car(seed, index):
    """The car number ``index`` (from 0) of data set ``seed``: its id, shape, paint and studio."""
    rng = np.random.default_rng([seed, index])
    u = rng.uniform
    car_id = rng.bytes(6).hex()
    kind = ("sedan", "hatch", "suv")[rng.choice(3, p=[0.45, 0.25, 0.3])]
    (length, width, height, clearance, radius, belt, overhang_front, overhang_rear, hood, rake, deck, rear_rake,
     drop) = [u(low, high) for low, high in SHAPES[kind]]  # drawn in this order: the data set depends on it
    hood, rake, deck, rear_rake = hood * length, rake * length, deck * length, rear_rake * length
    tail = belt - drop
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
