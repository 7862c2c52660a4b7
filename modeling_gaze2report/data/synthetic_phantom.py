"""Chest-radiograph phantom: the findings of the synthetic world, drawn over the anatomy of synthetic_anatomy.

`draw_study` draws a study's anatomy with its findings on one canvas. Texture (vessels, noise) comes from the study's
`texture_seed` only, so the same study drawn with and without one finding differs only where that finding is.
"""

from dataclasses import dataclass, replace

import numpy as np
from scipy.ndimage import gaussian_filter

from .synthetic_anatomy import CARINA, CM, HILA, SIDE_SIGN, Canvas, draw_anatomy, expose, lung_mask, soft_mask


@dataclass(frozen=True)
class Device:
    name: str  # "endotracheal tube", "central venous catheter", "nasogastric tube" or "pacemaker"
    side: str | None = None  # patient side of a central line's access vein or of a pacemaker pocket
    tip_above_carina_cm: float | None = None  # endotracheal tube only


@dataclass(frozen=True)
class Finding:
    """One drawn finding. `side` is the patient's side; `box` is canonical (u0, v0, u1, v1) and `region` the same
    box in pixels (x0, y0, x1, y1) of the study's image."""

    kind: str
    severity: str
    subtle: bool
    box: tuple
    region: tuple
    side: str | None = None
    lobe: str | None = None  # "upper", "middle" (right middle lobe / lingula) or "lower"
    size_cm: float | None = None  # nodule or mass diameter
    centre: tuple | None = None  # canonical centre of a nodule, mass, consolidation, atelectasis or fracture
    cardiothoracic_ratio: float | None = None  # cardiomegaly
    depth: float | None = None  # canonical extent of a pleural effusion's fluid or a pneumothorax's rim
    rib_number: int | None = None  # rib fracture, 1 = first posterior rib
    devices: tuple = ()
    shape_seed: int = 0


def pneumothorax_mask(anatomy, u, v, finding):
    """The lucent rim between the chest wall and the collapsed lung, apical and lateral."""
    collapsed = replace(
        anatomy, lung_half_width=anatomy.lung_half_width - finding.depth, apex_v=anatomy.apex_v + 1.4 * finding.depth
    )
    upper = soft_mask(anatomy.diaphragm_v[finding.side] - 0.08 - v, 0.03)
    return (
        lung_mask(anatomy, u, v, finding.side) * (1 - lung_mask(collapsed, u, v, finding.side, softness=0.002)) * upper
    )


def _draw_pneumothorax(canvas, finding, lungs):
    rim = pneumothorax_mask(canvas.anatomy, canvas.u, canvas.v, finding)
    canvas.attenuation -= (0.05 if finding.subtle else 0.09) * rim
    inner_edge = soft_mask(rim - 0.5, 0.05) * (1 - soft_mask(rim - 0.5, 0.05))
    pleural_line = (
        gaussian_filter(rim, sigma=0.6)
        * (1 - rim)
        * soft_mask(canvas.anatomy.diaphragm_v[finding.side] - 0.1 - canvas.v, 0.02)
    )
    canvas.attenuation += 0.35 * np.clip(4 * pleural_line, 0, 1) * lungs[finding.side] + 0.02 * inner_edge


def _draw_pleural_effusion(canvas, finding, lungs):
    anatomy, u, v = canvas.anatomy, canvas.u, canvas.v
    side = finding.side
    sign = SIDE_SIGN[side]
    lateral = anatomy.lung_lateral_u(side, v)
    medial = 0.5 + sign * anatomy.mediastinum_half_width
    across = np.clip((u - medial) / (lateral - medial), 0, 1)  # 0 at the mediastinum, 1 at the chest wall
    meniscus = anatomy.diaphragm_v[side] - finding.depth - 0.05 * across**2  # climbs the lateral chest wall
    inside = soft_mask(np.minimum(sign * (lateral - u), sign * (u - medial)), 0.006) * soft_mask(
        anatomy.costophrenic_v[side] + 0.015 - v, 0.006
    )
    fluid = soft_mask(v - meniscus, 0.012) * inside
    canvas.attenuation += (0.2 if finding.subtle else 0.26) * fluid * lungs[side]


def _draw_lump(canvas, finding, lungs):
    rng = np.random.default_rng(finding.shape_seed)
    radius = finding.size_cm * CM / 2
    centre = finding.centre
    rows, cols = canvas.window([centre], radius * 1.6)
    u, v = canvas.u[rows, cols] - centre[0], canvas.v[rows, cols] - centre[1]
    angle = np.arctan2(v, u)
    lobulation = 1 + 0.12 * np.sin(3 * angle + rng.uniform(0, 6.3)) + 0.08 * np.sin(5 * angle + rng.uniform(0, 6.3))
    edge = radius * (lobulation if finding.kind == "mass" else 1) - np.hypot(u, v)
    strength = {"nodule": 0.1 if finding.subtle else 0.17, "mass": 0.24}[finding.kind]
    canvas.attenuation[rows, cols] += (
        strength * soft_mask(edge, radius * 0.15) * (0.8 + 0.2 * np.clip(edge / radius, 0, 1))
    )


def _draw_consolidation(canvas, finding, lungs):
    rng = np.random.default_rng(finding.shape_seed)
    u0, v0, u1, v1 = finding.box
    patches = np.zeros_like(canvas.attenuation)
    for _ in range(7):
        centre = (
            rng.uniform(u0 + 0.3 * (u1 - u0), u1 - 0.3 * (u1 - u0)),
            rng.uniform(v0 + 0.3 * (v1 - v0), v1 - 0.3 * (v1 - v0)),
        )
        spread = rng.uniform(0.2, 0.3) * np.array([u1 - u0, v1 - v0])
        patches += np.exp(
            -0.5 * (((canvas.u - centre[0]) / spread[0]) ** 2 + ((canvas.v - centre[1]) / spread[1]) ** 2)
        )
    strength = {"mild": 0.12, "moderate": 0.19, "severe": 0.27}[finding.severity]
    canvas.attenuation += strength * np.clip(patches, 0, 1) * lungs[finding.side]
    for _ in range(3):
        start = np.array(finding.centre) + rng.normal(0, 0.015, 2)
        direction = rng.normal(0, 1, 2)
        bronchus = np.stack([start, start + 0.04 * direction / np.linalg.norm(direction)])
        canvas.stroke(bronchus, 0.005, -0.3 * strength, weight=np.clip(patches, 0, 1) * lungs[finding.side])


def _draw_atelectasis(canvas, finding, lungs):
    rng = np.random.default_rng(finding.shape_seed)
    centre = np.array(finding.centre)
    for offset in (0.0, rng.uniform(0.02, 0.035)) if finding.severity != "mild" else (0.0,):
        tilt = rng.uniform(-0.25, 0.25)
        half_length = rng.uniform(0.045, 0.07)
        plate = np.stack(
            [centre + [-half_length, offset - tilt * half_length], centre + [half_length, offset + tilt * half_length]]
        )
        canvas.stroke(plate, 0.009, 0.1 if finding.subtle else 0.17, weight=lungs[finding.side])


def _draw_edema(canvas, finding, lungs):
    strength = {"mild": 0.08, "moderate": 0.13, "severe": 0.2}[finding.severity]
    for side, lung in lungs.items():
        hilum = HILA[side]
        haze = np.exp(-0.5 * (((canvas.u - hilum[0]) / 0.11) ** 2 + ((canvas.v - hilum[1] - 0.03) / 0.12) ** 2))
        canvas.attenuation += strength * haze * lung
        if finding.severity != "mild":
            lateral = canvas.anatomy.lung_lateral_u(side, canvas.anatomy.diaphragm_v[side])
            for step in range(4):
                v = canvas.anatomy.diaphragm_v[side] - 0.01 - 0.018 * step
                canvas.stroke([[lateral, v], [lateral - SIDE_SIGN[side] * 0.035, v]], 0.003, 0.12, weight=lung)


def device_paths(device, anatomy):
    """Canonical polylines of a support device."""
    carina_v = CARINA[1]
    if device.name == "endotracheal tube":
        return [np.array([[0.5, 0.0], [0.5, carina_v - device.tip_above_carina_cm * CM]])]
    if device.name == "central venous catheter":
        sign = SIDE_SIGN[device.side]
        if device.side == "right":
            return [
                np.array([[0.5 + sign * 0.1, 0.0], [0.5 + sign * 0.08, 0.15], [0.5 + sign * 0.04, 0.25], [0.47, 0.36]])
            ]
        return [np.array([[0.5 + sign * 0.3, 0.15], [0.5 + sign * 0.15, 0.17], [0.5, 0.23], [0.47, 0.36]])]
    if device.name == "nasogastric tube":
        stomach_v = anatomy.diaphragm_v["left"] + 0.1
        return [np.array([[0.5, 0.0], [0.49, 0.3], [0.515, 0.6], [0.57, stomach_v], [0.63, stomach_v + 0.03]])]
    if device.name == "pacemaker":
        sign = SIDE_SIGN[device.side]
        pocket = np.array([0.5 + sign * 0.24, 0.2])
        heart_right_atrium = [0.47, 0.52]
        heart_right_ventricle = [0.55, anatomy.diaphragm_v["left"] - 0.02]
        return [
            np.array([pocket, [0.5 + sign * 0.1, 0.22], [0.47, 0.34], heart_right_atrium]),
            np.array([pocket, [0.5 + sign * 0.1, 0.23], [0.48, 0.34], [0.5, 0.55], heart_right_ventricle]),
        ]
    raise ValueError(f"unknown support device {device.name!r}")


def _draw_support_devices(canvas, finding, lungs):
    for device in finding.devices:
        for path in device_paths(device, canvas.anatomy):
            canvas.stroke(path, 0.006, 0.5)
        if device.name == "pacemaker":
            pocket = device_paths(device, canvas.anatomy)[0][0]
            generator = np.maximum(np.abs(canvas.u - pocket[0]) - 0.035, np.abs(canvas.v - pocket[1]) - 0.025)
            canvas.attenuation += 0.7 * soft_mask(0.008 - generator, 0.003)


# Cardiomegaly and rib fracture change the anatomy itself (heart width, a broken rib) inside `draw_anatomy`;
# the other findings are drawn on top of it.
FINDING_KINDS = (
    "cardiomegaly",
    "pleural_effusion",
    "pneumothorax",
    "nodule",
    "mass",
    "consolidation",
    "atelectasis",
    "edema",
    "support_devices",
    "rib_fracture",
)
FINDING_DRAWERS = {
    "pleural_effusion": _draw_pleural_effusion,
    "pneumothorax": _draw_pneumothorax,
    "nodule": _draw_lump,
    "mass": _draw_lump,
    "consolidation": _draw_consolidation,
    "atelectasis": _draw_atelectasis,
    "edema": _draw_edema,
    "support_devices": _draw_support_devices,
}


def draw_study(anatomy, findings, image_size):
    """The (image_size, image_size) uint8 radiograph of an anatomy with its findings."""
    unknown = [finding.kind for finding in findings if finding.kind not in FINDING_KINDS]
    if unknown:
        raise ValueError(f"unknown finding kinds {unknown}; known: {FINDING_KINDS}")
    by_kind = {finding.kind: finding for finding in findings}
    canvas = Canvas(anatomy, image_size)
    texture_rng = np.random.default_rng(anatomy.texture_seed)
    cardiomegaly = by_kind.get("cardiomegaly")
    cardiothoracic_ratio = cardiomegaly.cardiothoracic_ratio if cardiomegaly else anatomy.cardiothoracic_ratio
    lucent = {}
    if "pneumothorax" in by_kind:
        lucent[by_kind["pneumothorax"].side] = pneumothorax_mask(anatomy, canvas.u, canvas.v, by_kind["pneumothorax"])
    lungs = draw_anatomy(canvas, cardiothoracic_ratio, texture_rng, lucent, by_kind.get("rib_fracture"))
    for finding in findings:
        if finding.kind in FINDING_DRAWERS:
            FINDING_DRAWERS[finding.kind](canvas, finding, lungs)
    return expose(canvas, texture_rng)
