"""The 14 CheXpert observations in their standard order, shared by the data readers, the synthetic world, the
clinical-efficacy labeler and the model's heads."""

CHEXPERT_OBSERVATIONS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

# The 13 that are findings with a place in the image ("No Finding" has none): region labels and per-fixation targets
FINDING_OBSERVATIONS = tuple(name for name in CHEXPERT_OBSERVATIONS if name != "No Finding")
