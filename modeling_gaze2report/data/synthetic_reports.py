"""Radiology-style FINDINGS / IMPRESSION text for a synthetic study, and the CheXpert labels that text carries.

Every sentence template declares the observations it asserts, so the labels are read off the sentences actually
written: 1 for an asserted finding, 0 for an explicitly negated observation, None for one the text never mentions.
Every sentence also says what it is about, so that the simulated radiologist looks there while dictating it.
"""

from dataclasses import dataclass

from ..observations import CHEXPERT_OBSERVATIONS

LOBE_NAMES = {
    ("right", "upper"): "right upper lobe",
    ("right", "middle"): "right middle lobe",
    ("right", "lower"): "right lower lobe",
    ("left", "upper"): "left upper lobe",
    ("left", "middle"): "lingula",
    ("left", "lower"): "left lower lobe",
}
DEGREE_ADVERBS = {"mild": "mildly", "moderate": "moderately", "severe": "severely"}
SIZE_WORDS = {"mild": "small", "moderate": "moderate", "severe": "large"}
ORDINALS = {1: "1st", 2: "2nd", 3: "3rd"}

# (sentence template, extra observations the template asserts besides the finding's own)
FINDING_SENTENCES = {
    "cardiomegaly": [
        ("{Severity} cardiomegaly.", ()),
        ("The heart is {degree} enlarged.", ()),
        ("The cardiac silhouette is {degree} enlarged.", ()),
    ],
    "pleural_effusion": [
        ("{Size} {side} pleural effusion.", ()),
        ("There is a {size} {side} pleural effusion.", ()),
        ("{Size} {side} pleural effusion with blunting of the {side} costophrenic angle.", ()),
    ],
    "pneumothorax": [
        ("{Size} {side} apical pneumothorax.", ()),
        ("There is a {size} {side} pneumothorax.", ()),
        ("{Size} {side} apicolateral pneumothorax is present.", ()),
    ],
    "nodule": [
        ("There is a {size_cm} cm nodule in the {lobe}.", ()),
        ("A {size_cm} cm pulmonary nodule is seen in the {lobe}.", ()),
        ("{Lobe} nodule measuring {size_cm} cm.", ()),
    ],
    "mass": [
        ("There is a {size_cm} cm mass in the {lobe}.", ()),
        ("{Lobe} mass measuring {size_cm} cm.", ()),
        ("A {size_cm} cm {lobe} mass is present.", ()),
    ],
    "consolidation": [
        ("{Extent} consolidation in the {lobe}.", ()),
        ("There is {extent} consolidation of the {lobe}.", ()),
        ("{Extent} opacity with consolidation in the {lobe}.", ("Lung Opacity",)),
    ],
    "atelectasis": [
        ("Plate-like atelectasis in the {lobe}.", ()),
        ("There is subsegmental atelectasis in the {lobe}.", ()),
        ("Linear atelectasis at the {lobe}.", ()),
    ],
    "edema": [
        ("{Severity} pulmonary edema.", ()),
        ("There is {severity} pulmonary edema, most pronounced in the perihilar regions.", ()),
        ("Findings of {severity} interstitial pulmonary edema.", ()),
    ],
    "rib_fracture": [
        ("There is a {displacement} fracture of the {side} {rib} rib.", ()),
        ("{Displacement} {side} {rib} rib fracture.", ()),
        ("Acute {displacement} fracture of the {side} lateral {rib} rib.", ()),
    ],
}
DEVICE_SENTENCES = {
    "endotracheal tube": [
        "Endotracheal tube tip is {tip} cm above the carina.",
        "An endotracheal tube terminates {tip} cm above the carina.",
    ],
    "central venous catheter": [
        "{Side} central venous catheter with tip in the superior vena cava.",
        "{Side}-sided central line terminates in the SVC.",
    ],
    "nasogastric tube": [
        "Nasogastric tube courses below the diaphragm into the stomach.",
        "An enteric tube is seen with tip in the stomach.",
    ],
    "pacemaker": [
        "{Side} chest wall pacemaker with leads in the right atrium and right ventricle.",
        "{Side}-sided pacemaker with leads in standard position.",
    ],
}
IMPRESSION_PHRASES = {
    "cardiomegaly": "{Severity} cardiomegaly.",
    "pleural_effusion": "{Size} {side} pleural effusion.",
    "pneumothorax": "{Size} {side} pneumothorax.",
    "nodule": "{Size_cm} cm {lobe} nodule.",
    "mass": "{Size_cm} cm {lobe} mass.",
    "consolidation": "{Lobe} consolidation.",
    "atelectasis": "{Lobe} atelectasis.",
    "edema": "{Severity} pulmonary edema.",
    "rib_fracture": "{Side} {rib} rib fracture.",
    "support_devices": "Support devices as described.",
}
# observation -> sentences that negate it (used only when the observation is absent from the study)
NEGATIONS = {
    "Pneumothorax": ["No pneumothorax.", "There is no pneumothorax."],
    "Pleural Effusion": ["No pleural effusion.", "There is no pleural effusion."],
    "Consolidation": ["No focal consolidation.", "There is no focal consolidation."],
    "Edema": ["No pulmonary edema.", "There is no pulmonary edema."],
    "Cardiomegaly": ["Heart size is normal.", "No cardiomegaly."],
    "Lung Lesion": ["No pulmonary nodules or masses.", "There is no pulmonary nodule."],
    "Fracture": ["No acute rib fracture.", "There is no displaced rib fracture."],
}
FINDING_OBSERVATIONS = {
    "cardiomegaly": "Cardiomegaly",
    "pleural_effusion": "Pleural Effusion",
    "pneumothorax": "Pneumothorax",
    "nodule": "Lung Lesion",
    "mass": "Lung Lesion",
    "consolidation": "Consolidation",
    "atelectasis": "Atelectasis",
    "edema": "Edema",
    "support_devices": "Support Devices",
    "rib_fracture": "Fracture",
}
PARENCHYMAL_KINDS = {"pleural_effusion", "pneumothorax", "nodule", "mass", "consolidation", "atelectasis", "edema"}
NORMAL_IMPRESSIONS = ["No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality."]


@dataclass(frozen=True)
class Sentence:
    """One report sentence and what it is about: a `Finding` (its finding sentence or impression phrase), a `Device`
    (a support-device sentence), the name of the CheXpert observation it negates, "lungs" ("The lungs are clear.")
    or "chest" (the normal impression)."""

    text: str
    about: object


def _capitalise(text):
    return text[:1].upper() + text[1:]


def _words(finding):
    """Template fields of a finding; each also has a capitalised variant (`Side`, `Lobe`, ...)."""
    words = {
        "severity": finding.severity,
        "degree": DEGREE_ADVERBS[finding.severity],
        "size": SIZE_WORDS[finding.severity],
        "extent": {"mild": "patchy", "moderate": "focal", "severe": "dense"}[finding.severity],
        "side": finding.side or "",
        "lobe": LOBE_NAMES.get((finding.side, finding.lobe), ""),
        "size_cm": f"{finding.size_cm:.1f}" if finding.size_cm is not None else "",
        "rib": ORDINALS.get(finding.rib_number, f"{finding.rib_number}th"),
        "displacement": "nondisplaced" if finding.subtle else "displaced",
    }
    return words | {_capitalise(key): _capitalise(value) for key, value in words.items()}


def write_report(findings, rng):
    """(findings_sentences, impression_sentences, labels) for a study's findings: two lists of `Sentence`s, in
    report order (the FINDINGS text is its sentences joined by spaces, likewise the IMPRESSION), and labels, a list of
    14 values (1, 0 or None) in CHEXPERT_OBSERVATIONS order, equal to what the text says."""
    labels = dict.fromkeys(CHEXPERT_OBSERVATIONS)
    findings_sentences, impression_sentences = [], []
    for finding in findings:
        labels[FINDING_OBSERVATIONS[finding.kind]] = 1
        if finding.kind == "support_devices":
            for device in finding.devices:
                templates = DEVICE_SENTENCES[device.name]
                tip = f"{device.tip_above_carina_cm:.0f}" if device.tip_above_carina_cm is not None else ""
                side = device.side or ""
                text = templates[rng.integers(len(templates))].format(tip=tip, Side=_capitalise(side))
                findings_sentences.append(Sentence(text, device))
        else:
            template, asserted = FINDING_SENTENCES[finding.kind][rng.integers(len(FINDING_SENTENCES[finding.kind]))]
            findings_sentences.append(Sentence(template.format(**_words(finding)), finding))
            for observation in asserted:
                labels[observation] = 1
        impression = IMPRESSION_PHRASES[finding.kind]
        impression_sentences.append(
            Sentence(impression if finding.kind == "support_devices" else impression.format(**_words(finding)), finding)
        )

    kinds = {finding.kind for finding in findings}
    normal = not kinds - {"support_devices"}
    absent = [observation for observation in NEGATIONS if labels[observation] is None]
    negated = rng.choice(
        absent, size=min(len(absent), int(rng.integers(2, 5) if normal else rng.integers(1, 4))), replace=False
    )
    for observation in sorted(negated, key=CHEXPERT_OBSERVATIONS.index):
        sentences = NEGATIONS[observation]
        findings_sentences.append(Sentence(sentences[rng.integers(len(sentences))], str(observation)))
        labels[observation] = 0
    if not kinds & PARENCHYMAL_KINDS:
        findings_sentences.append(Sentence("The lungs are clear.", "lungs"))
    if normal:
        normal_impression = Sentence(NORMAL_IMPRESSIONS[rng.integers(len(NORMAL_IMPRESSIONS))], "chest")
        impression_sentences = [normal_impression] + impression_sentences
        labels["No Finding"] = 1
    return findings_sentences, impression_sentences, [labels[name] for name in CHEXPERT_OBSERVATIONS]
