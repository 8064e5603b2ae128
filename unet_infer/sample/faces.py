"""The car as flat 3-D faces (metres, x forward, y left, z up): the body with its wheel wells,
lights and seams, the cabin with its glass, and the wheels with their rims."""

from dataclasses import dataclass

import numpy as np

SKY = np.array([236.0, 238.0, 242.0])            # the studio, as glossy surfaces reflect it
TYRE = (np.array([30.0, 30.0, 32.0]), 0.08)      # (colour, gloss)
LINER = (np.array([22.0, 22.0, 24.0]), 0.0)      # inside of the wheel arches
ARCH_GAP = 0.04          # arch radius minus wheel radius, metres
TYRE_WIDTH = 0.22
WHEEL_SIDES = 32


@dataclass
class Face:
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


def body_faces(car):
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
            liners.append(Face(points, normal, *LINER, two_sided=True))
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
        quads.append(Face(points, normal, paint, car.gloss, decals))
    flanks = [Face(_at(outline, s * hw), np.array([0.0, s, 0.0]), paint, car.gloss,
                    _side_decals(car, top, paint, s * hw)) for s in (1, -1)]
    y_well = hw - 0.05 - TYRE_WIDTH
    for axle in (car.axle_rear, car.axle_front):
        for s in (1, -1):
            liners.append(Face(_at(_arch(car, axle), s * y_well), np.array([0.0, s, 0.0]), *LINER,
                                two_sided=True))
    return liners, quads, flanks


def cabin_faces(car):
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
        Face(front, _outward(front, inside), paint, car.gloss,
              ((inset(front, 0.04, 0.06), glass, 0.5), (glare, glass + 45, 0.5))),
        Face(rear, _outward(rear, inside), paint, car.gloss,
              ((inset(rear, 0.06, 0.08), glass, 0.5),)),
        Face(roof, _outward(roof, inside), paint, car.gloss),
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
        faces.append(Face(side, _outward(side, inside), paint, car.gloss, windows))
    return faces


def wheel_faces(car, axle, side):
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
        faces.append(Face(tread, _outward(tread, centre), *TYRE))
    rim = np.array(car.rim)
    decals = [(disc(0.64 * r, y_out), rim, 0.4), (disc(0.58 * r, y_out), rim * 0.8, 0.3)]
    pitch = 2 * np.pi / car.spokes
    for k in range(car.spokes):
        arc = np.linspace(k * pitch + 0.22 * pitch, (k + 1) * pitch - 0.22 * pitch, 5)
        hole = np.concatenate([disc(0.52 * r, y_out, arc), disc(0.2 * r, y_out, arc[::-1])])
        decals.append((hole, np.array([28.0, 28.0, 30.0]), 0.0))
    decals.append((disc(0.12 * r, y_out), rim * 0.9, 0.4))
    faces.append(Face(out_ring, np.array([0.0, side, 0.0]), *TYRE, tuple(decals)))
    faces.append(Face(in_ring, np.array([0.0, -side, 0.0]), *TYRE))
    return centre, faces
