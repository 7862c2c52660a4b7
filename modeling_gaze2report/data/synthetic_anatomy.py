"""Chest-radiograph phantom anatomy: the study's pose, anatomy and exposure, and the canvas it is drawn on (numpy).

Everything is laid out in *canonical* coordinates: (u, v) in [0, 1] x [0, 1], u to the image right, v down, of a
frontal (PA/AP) view. Radiographic convention holds throughout: the patient's right is the image left (small u) and
the patient's left is the image right (large u), so the heart bulges to large u. A per-study pose (small rotation,
scale and shift) maps canonical coordinates to pixels; `Pose.to_pixels` is the one place that happens.

The image is built on a `Canvas` as an attenuation map (0 = air, 1 = dense bone/metal) summed from the structures,
then mapped to grey levels with the study's exposure (`expose`). The findings are drawn on the same canvas by
synthetic_phantom.
"""

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

CM = 0.0245  # canonical units per centimetre: the ~29 cm inner thorax spans ~0.72 of the image width
CARINA = (0.5, 0.33)
HILA = {"right": (0.385, 0.45), "left": (0.615, 0.45)}
SIDE_SIGN = {"right": -1.0, "left": 1.0}  # patient side -> direction of image u from the midline
HEART_TILT = np.deg2rad(38)  # long axis of the heart, downwards towards the patient's left
HEART_ASPECT = 0.68  # short / long axis of the heart


@dataclass(frozen=True)
class Pose:
    angle_degrees: float
    scale: float
    shift_u: float
    shift_v: float

    def to_pixels(self, points, image_size):
        """Canonical (..., 2) points -> pixel (x, y) coordinates of an image_size x image_size image."""
        points = np.asarray(points, dtype=np.float64)
        angle = np.deg2rad(self.angle_degrees)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centred = (points - 0.5) @ rotation.T * self.scale
        normalised = centred + 0.5 + np.array([self.shift_u, self.shift_v])
        return normalised * image_size - 0.5

    def canonical_grid(self, image_size):
        """Canonical coordinates of every pixel centre: two (image_size, image_size) arrays u, v."""
        pixel = (np.arange(image_size, dtype=np.float64) + 0.5) / image_size
        x, y = np.meshgrid(pixel - 0.5 - self.shift_u, pixel - 0.5 - self.shift_v)
        angle = np.deg2rad(self.angle_degrees)
        u = (np.cos(angle) * x + np.sin(angle) * y) / self.scale + 0.5
        v = (-np.sin(angle) * x + np.cos(angle) * y) / self.scale + 0.5
        return u, v


@dataclass(frozen=True)
class Anatomy:
    """Per-study anatomy, exposure and pose; the lungs are described per patient side ("right", "left")."""

    view: str
    pose: Pose
    apex_v: float  # top of both lungs
    lung_half_width: float  # lateral extent of each lung from the midline at its widest
    mediastinum_half_width: float
    diaphragm_v: dict  # side -> v of the dome top
    costophrenic_v: dict  # side -> v of the lateral costophrenic angle
    cardiothoracic_ratio: float  # of the normal heart; cardiomegaly overrides it
    rib_spacing: float
    exposure_contrast: float
    exposure_gamma: float
    noise_level: float
    texture_seed: int

    @property
    def thoracic_width(self):
        return 2 * self.lung_half_width

    def lung_lateral_u(self, side, v):
        """Image u of the lateral (rib) margin of the lung on a patient side at height v (rounded apex)."""
        reach = 0.05 + (self.lung_half_width - 0.05) * np.sqrt(np.clip((v - self.apex_v) / 0.42, 0, 1))
        return 0.5 + SIDE_SIGN[side] * reach

    def diaphragm(self, side, u):
        """v of the hemidiaphragm under image column u (a dome, lowest at the costophrenic angle)."""
        centre = 0.5 + SIDE_SIGN[side] * self.lung_half_width * 0.55
        half_span = self.lung_half_width * 0.62
        depth = self.costophrenic_v[side] - self.diaphragm_v[side]
        return self.diaphragm_v[side] + depth * np.clip(((u - centre) / half_span) ** 2, 0, 1.3)

    def heart_ellipse(self, cardiothoracic_ratio):
        """Centre (u, v), semi-axes (long, short) and tilt of the cardiac silhouette: an ellipse whose long axis runs
        from the right heart border down to the apex on the patient's left, its lower part hidden by the diaphragm."""
        width = cardiothoracic_ratio * self.thoracic_width
        long_axis = 0.5 * width / np.sqrt(np.cos(HEART_TILT) ** 2 + (HEART_ASPECT * np.sin(HEART_TILT)) ** 2)
        short_axis = HEART_ASPECT * long_axis
        half_height = np.sqrt((long_axis * np.sin(HEART_TILT)) ** 2 + (short_axis * np.cos(HEART_TILT)) ** 2)
        centre = (
            0.5 - 0.36 * width + 0.5 * width,
            0.5 * (self.diaphragm_v["right"] + self.diaphragm_v["left"]) - 0.55 * half_height,
        )
        return centre, (long_axis, short_axis), half_height

    def heart_box(self, cardiothoracic_ratio):
        """(u0, v0, u1, v1) of the visible cardiac silhouette for a given cardiothoracic ratio."""
        width = cardiothoracic_ratio * self.thoracic_width
        centre, _, half_height = self.heart_ellipse(cardiothoracic_ratio)
        return (
            centre[0] - 0.5 * width,
            centre[1] - half_height,
            centre[0] + 0.5 * width,
            max(self.diaphragm_v.values()) + 0.02,
        )

    def lung_box(self, side):
        """(u0, v0, u1, v1) of one lung."""
        lateral = 0.5 + SIDE_SIGN[side] * self.lung_half_width
        medial = 0.5 + SIDE_SIGN[side] * self.mediastinum_half_width
        return (min(lateral, medial), self.apex_v, max(lateral, medial), self.costophrenic_v[side])

    def lobe_box(self, side, lobe):
        """(u0, v0, u1, v1) of a lobe zone as projected on a frontal view: "upper", "middle" (the right middle lobe
        or the lingula) or "lower"."""
        u0, v0, u1, v1 = self.lung_box(side)
        height = v1 - v0
        if lobe == "upper":
            return (u0, v0 + 0.08 * height, u1, v0 + 0.42 * height)
        if lobe == "middle":
            return (u0, v0 + 0.5 * height, u1, v0 + 0.75 * height)
        if lobe == "lower":
            return (u0, v0 + 0.7 * height, u1, v0 + 0.92 * height)
        raise ValueError(f"lobe must be 'upper', 'middle' or 'lower', got {lobe!r}")


def sample_anatomy(rng, view):
    lung_half_width = rng.uniform(0.34, 0.38)
    right_dome = rng.uniform(0.68, 0.72)
    left_dome = right_dome + rng.uniform(0.005, 0.03)  # the right hemidiaphragm sits a little higher
    return Anatomy(
        view=view,
        pose=Pose(
            angle_degrees=float(rng.uniform(-3, 3)),
            scale=float(rng.uniform(0.93, 1.04)),
            shift_u=float(rng.uniform(-0.025, 0.025)),
            shift_v=float(rng.uniform(-0.02, 0.03)),
        ),
        apex_v=float(rng.uniform(0.11, 0.15)),
        lung_half_width=float(lung_half_width),
        mediastinum_half_width=float(rng.uniform(0.055, 0.07)),
        diaphragm_v={"right": float(right_dome), "left": float(left_dome)},
        costophrenic_v={
            "right": float(right_dome + rng.uniform(0.07, 0.1)),
            "left": float(left_dome + rng.uniform(0.07, 0.1)),
        },
        cardiothoracic_ratio=float(rng.uniform(0.40, 0.48)),
        rib_spacing=float(rng.uniform(0.058, 0.066)),
        exposure_contrast=float(rng.uniform(0.85, 1.0)),
        exposure_gamma=float(rng.uniform(0.9, 1.35)),
        noise_level=float(rng.uniform(0.008, 0.02)),
        texture_seed=int(rng.integers(2**31)),
    )


def soft_mask(signed_distance, softness):
    """Smooth 0..1 mask from a signed distance (positive inside), edge width `softness` in canonical units."""
    return 0.5 * (1 + np.tanh(signed_distance / softness))


class Canvas:
    """An attenuation map plus the canonical coordinates of its pixels; strokes touch only their bounding box."""

    def __init__(self, anatomy, image_size):
        self.anatomy = anatomy
        self.image_size = image_size
        self.u, self.v = anatomy.pose.canonical_grid(image_size)  # (image_size, image_size) each
        self.attenuation = np.zeros((image_size, image_size))

    def window(self, points, margin):
        """Pixel slices covering canonical points (n, 2) padded by a canonical margin."""
        corners = np.asarray(points, dtype=np.float64)
        padded = np.concatenate(
            [corners - margin, corners + margin, corners + [margin, -margin], corners + [-margin, margin]]
        )
        pixels = self.anatomy.pose.to_pixels(padded, self.image_size)
        x0, y0 = np.floor(pixels.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pixels.max(axis=0)).astype(int) + 1
        size = self.image_size
        return slice(max(y0, 0), min(max(y1, 0), size)), slice(max(x0, 0), min(max(x1, 0), size))

    def stroke(self, polyline, width, strength, weight=None):
        """Add a bright line of canonical `width` along a polyline (n, 2); `weight` optionally masks it."""
        polyline = np.asarray(polyline, dtype=np.float64)
        rows, cols = self.window(polyline, 2 * width)
        u, v = self.u[rows, cols], self.v[rows, cols]
        distance = np.full(u.shape, np.inf)
        for start, end in zip(polyline[:-1], polyline[1:]):
            direction = end - start
            t = np.clip(
                ((u - start[0]) * direction[0] + (v - start[1]) * direction[1]) / max(direction @ direction, 1e-12),
                0,
                1,
            )
            distance = np.minimum(distance, np.hypot(u - start[0] - t * direction[0], v - start[1] - t * direction[1]))
        line = strength * soft_mask(width / 2 - distance, width / 4)
        if weight is not None:
            line = line * weight[rows, cols]
        self.attenuation[rows, cols] += line


def lung_mask(anatomy, u, v, side, softness=0.006):
    """Soft mask of one lung field (before the heart covers it)."""
    sign = SIDE_SIGN[side]
    lateral = sign * (anatomy.lung_lateral_u(side, v) - u)
    medial = sign * (u - 0.5) - anatomy.mediastinum_half_width - 0.02 * np.clip((v - 0.3) / 0.2, 0, 1)
    base = anatomy.diaphragm(side, u) - v
    return soft_mask(np.minimum(np.minimum(lateral, medial), np.minimum(base, v - anatomy.apex_v)), softness)


def heart_mask(anatomy, u, v, cardiothoracic_ratio):
    (centre_u, centre_v), (long_axis, short_axis), _ = anatomy.heart_ellipse(cardiothoracic_ratio)
    along = (u - centre_u) * np.cos(HEART_TILT) + (v - centre_v) * np.sin(HEART_TILT)
    across = -(u - centre_u) * np.sin(HEART_TILT) + (v - centre_v) * np.cos(HEART_TILT)
    radius = np.hypot(along / long_axis, across / short_axis)
    return soft_mask((1 - radius) * short_axis, 0.006)


RIB_MEDIAL_REACH = 0.03  # posterior ribs start this far from the midline


def rib_v(anatomy, index, reach):
    """v of the centre line of posterior rib `index` (0 = first rib) at a lateral distance `reach` from the midline."""
    return anatomy.apex_v - 0.035 + index * anatomy.rib_spacing - 0.08 * reach + 1.25 * reach**2


def rib_curve(anatomy, side, index, num_points=24):
    """Polyline (num_points, 2) of posterior rib `index` of a patient side, from the spine to the chest wall."""
    reach = np.linspace(RIB_MEDIAL_REACH, anatomy.lung_half_width + 0.04, num_points)
    return np.stack([0.5 + SIDE_SIGN[side] * reach, rib_v(anatomy, index, reach)], axis=1)


def _draw_rib(canvas, side, index, fracture):
    """A posterior rib: a bright band with brighter cortical edges. A fracture leaves a gap at its centre and
    angulates the lateral fragment by its offset (`depth`), tapering to the chest wall."""
    anatomy = canvas.anatomy
    lateral_reach = anatomy.lung_half_width + 0.04
    rows, cols = canvas.window(rib_curve(anatomy, side, index, num_points=6), 0.03)
    u, v = canvas.u[rows, cols], canvas.v[rows, cols]
    reach = SIDE_SIGN[side] * (u - 0.5)
    centre_v = rib_v(anatomy, index, reach)
    span = soft_mask(reach - RIB_MEDIAL_REACH, 0.005) * soft_mask(lateral_reach - reach, 0.01)
    if fracture is not None:
        break_reach = SIDE_SIGN[side] * (fracture.centre[0] - 0.5)
        taper = np.clip((lateral_reach - reach) / (lateral_reach - break_reach), 0, 1) * (reach > break_reach)
        centre_v = centre_v + fracture.depth * taper
        span = span * (1 - soft_mask(0.004 - np.abs(reach - break_reach), 0.0015))
    distance = np.abs(v - centre_v) / np.sqrt(1 + (2.5 * reach - 0.08) ** 2)
    band = 0.07 * soft_mask(0.0085 - distance, 0.002) + 0.03 * np.exp(-(((distance - 0.008) / 0.0025) ** 2))
    canvas.attenuation[rows, cols] += band * span


def draw_anatomy(canvas, cardiothoracic_ratio, rng, lucent, rib_fracture):
    """Body, lungs with vascular markings, mediastinum, heart, diaphragm, spine, ribs, clavicles, humeral heads.
    `lucent` (side -> mask) removes lung markings (pneumothorax); `rib_fracture` (a Finding or None) breaks a rib.
    Returns the lung masks (side -> (size, size)) so findings can use them."""
    anatomy, u, v = canvas.anatomy, canvas.u, canvas.v
    body_half_width = 0.12 + 0.35 * np.clip((v - 0.01) / 0.12, 0, 1) ** 0.5 - 0.03 * np.clip(v - 0.6, 0, 1)
    body = soft_mask(body_half_width - np.abs(u - 0.5), 0.01)
    subphrenic = np.maximum(
        soft_mask(v - anatomy.diaphragm("right", u), 0.008) * (u < 0.5),
        soft_mask(v - anatomy.diaphragm("left", u), 0.008) * (u >= 0.5),
    )
    canvas.attenuation += body * (0.28 + 0.1 * np.clip(np.abs(u - 0.5) / 0.46, 0, 1) ** 3 + 0.2 * subphrenic)

    heart = heart_mask(anatomy, u, v, cardiothoracic_ratio)
    lungs = {side: lung_mask(anatomy, u, v, side) * (1 - heart) for side in ("right", "left")}
    for side, lung in lungs.items():
        depth = np.clip(np.abs(u - HILA[side][0]) / anatomy.lung_half_width, 0, 1)
        canvas.attenuation -= lung * (0.25 - 0.06 * depth**2)
        hilum = HILA[side]
        canvas.attenuation += 0.06 * np.exp(-0.5 * (((u - hilum[0]) / 0.03) ** 2 + ((v - hilum[1]) / 0.05) ** 2))
    mediastinum_width = anatomy.mediastinum_half_width * (0.75 + 0.35 * np.clip(v / 0.45, 0, 1))
    mediastinum = soft_mask(mediastinum_width - np.abs(u - 0.5), 0.008) * soft_mask(v - anatomy.apex_v + 0.02, 0.03)
    aortic_knob = soft_mask(0.035 - np.hypot(u - 0.56, v - 0.29), 0.006)
    canvas.attenuation += body * 0.26 * np.maximum(np.maximum(mediastinum, aortic_knob), heart * (1 - subphrenic))
    trachea = soft_mask(0.015 - np.abs(u - 0.5 - 0.1 * np.clip(v - 0.2, 0, 1)), 0.004) * soft_mask(CARINA[1] - v, 0.006)
    canvas.attenuation -= 0.12 * trachea

    vertebrae = 0.5 + 0.5 * np.cos(2 * np.pi * (v - anatomy.apex_v) / (anatomy.rib_spacing * 0.78))
    spine = soft_mask(0.034 - np.abs(u - 0.5), 0.006) * (0.07 + 0.015 * vertebrae)
    canvas.attenuation += spine * soft_mask(v - 0.02, 0.01)

    for side in ("right", "left"):
        sign = SIDE_SIGN[side]
        for index in range(10):
            broken = rib_fracture is not None and rib_fracture.side == side and rib_fracture.rib_number == index + 1
            _draw_rib(canvas, side, index, rib_fracture if broken else None)
            anterior_reach = np.array([anatomy.lung_half_width, 0.12])
            anterior_v = (
                anatomy.apex_v
                + 0.03
                + index * anatomy.rib_spacing * 0.9
                + 0.28 * (anatomy.lung_half_width - anterior_reach)
            )
            canvas.stroke(np.stack([0.5 + sign * anterior_reach, anterior_v], axis=1), 0.014, 0.02)
        reach = np.linspace(0.05, 0.33, 6)
        clavicle = np.stack([0.5 + sign * reach, anatomy.apex_v + 0.05 - 0.25 * reach + 0.35 * reach**2], axis=1)
        canvas.stroke(clavicle, 0.022, 0.16)
        humeral_head = soft_mask(0.065 - np.hypot(u - 0.5 - sign * 0.45, v - anatomy.apex_v - 0.02), 0.008)
        canvas.attenuation += 0.2 * humeral_head

    for side, lung in lungs.items():
        hilum = np.array(HILA[side])
        markings = lung * (1 - lucent[side]) if side in lucent else lung
        for angle in np.deg2rad(rng.uniform(-80, 90, size=14)):
            direction = np.array([SIDE_SIGN[side] * np.cos(angle), -np.sin(angle) * 1.3])
            length = rng.uniform(0.1, 0.22)
            start = hilum + rng.normal(0, 0.015, size=2) + 0.02 * direction
            middle = start + 0.45 * length * direction + rng.normal(0, 0.01, size=2)
            canvas.stroke(np.stack([start, middle]), 0.009, 0.035, weight=markings)
            for _ in range(2):
                twig = direction + rng.normal(0, 0.35, size=2)
                canvas.stroke(np.stack([middle, middle + 0.55 * length * twig]), 0.005, 0.025, weight=markings)
    return lungs


def expose(canvas, rng):
    """Attenuation -> uint8 grey levels (brighter = denser), with noise, mottle, blur and exposure variation."""
    anatomy = canvas.anatomy
    size = canvas.image_size
    mottle = gaussian_filter(rng.normal(0, 1, (size, size)), sigma=size / 60)
    attenuation = canvas.attenuation + 0.6 * anatomy.noise_level * mottle / max(mottle.std(), 1e-9)
    attenuation = gaussian_filter(attenuation, sigma=max(0.35, size / 400))
    film = (1 - np.exp(-2.5 * np.clip(attenuation, 0, None))) / (1 - np.exp(-2.5))
    brightness = np.clip(film * anatomy.exposure_contrast, 0, 1) ** anatomy.exposure_gamma
    brightness = brightness + rng.normal(0, anatomy.noise_level, (size, size))
    return np.clip(np.round(brightness * 255), 0, 255).astype(np.uint8)
