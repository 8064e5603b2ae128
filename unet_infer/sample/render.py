"""Drawing one view: the perspective camera on the turntable, the car's faces in painter's order
(supersampled), the studio with the car's floor shadow, then sensor noise; and the mask."""

from statistics import NormalDist

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from .faces import SKY, TYRE_WIDTH, body_faces, cabin_faces, wheel_faces

MAX_VIEWS = 16
VIEW_STEP_DEG = 360.0 / MAX_VIEWS
SUPERSAMPLE = 2          # the car is drawn at this multiple of the image size, then averaged down
SHADOW_SCALE = 4         # the studio and its shadows are computed at 1/SHADOW_SCALE resolution
LIGHT = np.array([-0.3, -0.5, 0.8]) / np.linalg.norm([-0.3, -0.5, 0.8])   # world frame, z up
_NORMAL_QUANTILES = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)])


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

    def shade(self, colour, normal, gloss):
        """RGB of a surface under the studio light: diffuse light plus a reflection of the studio."""
        n = self.turn @ normal
        lit = colour * (0.6 + 0.4 * max(0.0, float(n @ LIGHT)))
        mirror = np.clip(gloss * (0.3 + 0.7 * max(0.0, n[2]) ** 2), 0, 1)
        return tuple(int(c) for c in np.clip(lit + (SKY - lit) * mirror + 0.5, 0, 255))


def _draw_car(car, camera, width, height):
    """The car over its bounding box, drawn at SUPERSAMPLE x and averaged down: (RGBA image with
    straight alpha, the box's corner (x, y))."""
    liners, quads, flanks = body_faces(car)
    wheels = [wheel_faces(car, axle, side) for axle in (car.axle_front, car.axle_rear) for side in (1, -1)]
    cabin = cabin_faces(car)
    every_point = np.concatenate([f.points for f in liners + quads + flanks + cabin]
                                 + [f.points for _, faces in wheels for f in faces])
    corners = camera.project(every_point)
    x0, y0 = np.clip(np.floor(corners.min(axis=0)).astype(int) - 1, 0, (width - 1, height - 1))
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)).astype(int) + 1, (x0 + 1, y0 + 1), (width, height))
    origin = (int(x0), int(y0))
    layer = Image.new("RGBA", (int(x1 - x0) * SUPERSAMPLE, int(y1 - y0) * SUPERSAMPLE))
    pen = ImageDraw.Draw(layer)

    def draw(face):  # a face whose outer side looks away is hidden (two-sided faces never are)
        if face.two_sided or np.dot(camera.eye - face.points.mean(axis=0), face.normal) > 0:
            for points, colour, gloss in ((face.points, face.colour, face.gloss), *face.decals):
                pen.polygon(camera.polygon(points, origin, SUPERSAMPLE),
                            fill=camera.shade(colour, face.normal, gloss) + (255,))

    # Painter's order: arch liners, wheels far to near (the body's arches show them), the body
    # far to near (its flank last), then the cabin, which sits on top of it.
    for face in liners:
        draw(face)
    for _, faces in sorted(wheels, key=lambda w: -np.linalg.norm(camera.eye - w[0])):
        for face in faces:
            draw(face)
    for face in sorted(quads, key=lambda f: -np.linalg.norm(camera.eye - f.points.mean(axis=0))):
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
