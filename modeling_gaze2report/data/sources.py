"""Which dataset to read: the synthetic world, a real dataset by its reader, or a saved `DatasetDict`."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from .readers_gaze import load_egd_cxr, load_reflacx
from .readers_mimic import load_iu_xray, load_mimic_cxr
from .synthetic import make_synthetic_dataset

logger = logging.getLogger(__name__)

DATA_SOURCES = ("synthetic", "mimic-cxr", "iu-xray", "egd-cxr", "reflacx", "saved")
READERS = {"mimic-cxr": load_mimic_cxr, "iu-xray": load_iu_xray, "egd-cxr": load_egd_cxr, "reflacx": load_reflacx}


@dataclass
class DataSourceArguments:
    data_source: str = field(default="synthetic", metadata={"help": f"One of {', '.join(DATA_SOURCES)}."})
    data_path: str | None = field(
        default=None,
        metadata={
            "help": "mimic-cxr / iu-xray: annotation.json; egd-cxr / reflacx: the dataset root; saved: a directory "
            "written by DatasetDict.save_to_disk; synthetic: none."
        },
    )
    image_root: str | None = field(
        default=None, metadata={"help": "Images: MIMIC-CXR-JPG 2.0.0 root (mimic-cxr, egd-cxr, reflacx) or IU images."}
    )
    num_synthetic_studies: int = 400
    synthetic_image_size: int = 128
    synthetic_seed: int = 0
    strict: bool = field(default=True, metadata={"help": "False: readers skip and count malformed rows."})


def load_training_data(source: DataSourceArguments) -> datasets.DatasetDict:
    """The dataset `source` names, in the Gaze2Report schema. A missing path or option is named in the error."""
    name = source.data_source
    if name not in DATA_SOURCES:
        raise ValueError(f"Unknown data_source {name!r}; choose one of {', '.join(DATA_SOURCES)}")
    if name == "synthetic":
        return make_synthetic_dataset(
            num_studies=source.num_synthetic_studies, seed=source.synthetic_seed, image_size=source.synthetic_image_size
        )
    if source.data_path is None:
        raise ValueError(f"data_source {name!r} needs --data_path")
    data_path = Path(source.data_path)
    if not data_path.exists():
        raise FileNotFoundError(f"--data_path {data_path} does not exist (data_source {name!r})")
    if name == "saved":
        return datasets.load_from_disk(str(data_path))
    if name != "iu-xray" and source.image_root is None:
        raise ValueError(f"data_source {name!r} needs --image_root (the MIMIC-CXR-JPG 2.0.0 root)")
    if source.image_root is not None and not Path(source.image_root).exists():
        raise FileNotFoundError(f"--image_root {source.image_root} does not exist")
    dataset, read_report = READERS[name](data_path, source.image_root, strict=source.strict)
    logger.info(read_report.summary())
    return dataset
