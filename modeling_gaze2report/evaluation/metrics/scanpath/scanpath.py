"""Scanpath similarity between predicted and recorded scanpaths, as an `evaluate` metric.

Each prediction / reference is one scanpath: a list of {"x", "y", "duration"} dicts or (x, y, duration) triples in
original image pixels and seconds. `image_size` (required) gives one (width, height) per pair. The metrics and their
parameters are those of `modeling_gaze2report.evaluation.scanpath_metrics` (MultiMatch, grid edit similarity,
ScanMatch, DTW, NSS, AUC-Judd, CC, KLD); per-pair values are averaged over the pairs where each is defined.
"""

import datasets
import evaluate

from modeling_gaze2report.evaluation.scanpath_metrics import scanpath_scores

_CITATION = """\
@article{dewhurst2012multimatch, title={It depends on how you look at it: Scanpath comparison in multiple dimensions
  with MultiMatch}, author={Dewhurst, Richard and others}, journal={Behavior Research Methods}, year={2012}}
@article{cristino2010scanmatch, title={ScanMatch: A novel method for comparing fixation sequences},
  author={Cristino, Filipe and others}, journal={Behavior Research Methods}, year={2010}}
@article{bylinskii2019metrics, title={What do different evaluation metrics tell us about saliency models?},
  author={Bylinskii, Zoya and others}, journal={IEEE TPAMI}, year={2019}}
"""
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted scanpaths, one list of fixations per pair.
    references: recorded scanpaths, one list of fixations per pair.
    image_size (`list[tuple[int, int]]`): (width, height) in pixels of each pair's image. Required.
    grid (`tuple[int, int]`): (columns, rows) of the edit-distance and ScanMatch grid, default (5, 5).
    temporal_bin (`float`): ScanMatch temporal bin in seconds, default 0.05.
    scanmatch_threshold (`float`): ScanMatch substitution threshold in grid cells, default 2.0.
    map_width (`int`): width of the saliency-map grid, default 64.
    sigma_fraction (`float`): Gaussian sigma as a fraction of the image width, default 0.05.
Returns:
    multimatch_{vector,direction,length,position,duration}, edit_similarity, scanmatch, dtw_pixels, dtw_normalized,
    nss, auc_judd, cc, kld, num_pairs, skipped_pairs, units.
"""

_FIXATION_AS_DICT = {
    "x": datasets.Value("float64"),
    "y": datasets.Value("float64"),
    "duration": datasets.Value("float64"),
}
_FIXATION_AS_TRIPLE = datasets.List(datasets.Value("float64"))


class Scanpath(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.List(_FIXATION_AS_DICT), "references": datasets.List(_FIXATION_AS_DICT)}
                ),
                datasets.Features(
                    {
                        "predictions": datasets.List(_FIXATION_AS_TRIPLE),
                        "references": datasets.List(_FIXATION_AS_TRIPLE),
                    }
                ),
            ],
        )

    def _compute(self, predictions, references, image_size=None, **parameters):
        return scanpath_scores(predictions, references, image_size, **parameters)
