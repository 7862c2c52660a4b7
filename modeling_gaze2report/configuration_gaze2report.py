"""Configuration of Gaze2Report: a vision tower, a scanpath predictor and a gaze graph network around a causal LM."""

import copy
import math

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

# fmt: off
# What a saved folder declares, so that it loads with trust_remote_code where the package is absent: its classes and
# its pipeline, for `pipeline(model=folder, trust_remote_code=True)`.
AUTO_MAP = {"AutoConfig": "configuration_gaze2report.Gaze2ReportConfig",
            "AutoModel": "modeling_gaze2report.Gaze2ReportModel",
            "AutoModelForImageTextToText": "modeling_gaze2report.Gaze2ReportForConditionalGeneration"}
PIPELINE_ENTRY = {"gaze2report": {"impl": "pipeline_gaze2report.Gaze2ReportPipeline",
                                  "pt": ["AutoModelForImageTextToText"], "tf": [], "type": "multimodal"}}
TINY_VISION_CONFIG = {"image_size": 64, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
                      "num_attention_heads": 2, "intermediate_size": 64, "num_channels": 3}
TINY_TEXT_CONFIG = {"vocab_size": 1024, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 512,
                    "tie_word_embeddings": True}
# fmt: on
RETIRED_VARIANTS = {
    "use_finding_conditioning": "the finding conditioning (a CheXpert classifier added to every input position) "
    "carried the image around the visual-gaze tokens, not through them, and was retired (docs/experiments.md)",
    "use_finding_tokens": "the finding tokens were retired with the finding conditioning (docs/experiments.md)",
}
RETIRED_FIELDS = ("finding_loss_weight", "finding_checklist")  # weights and switches of the retired variants
VISUAL_TOKEN_SOURCES = ("graph", "pooled_patches")


def refuse_retired_variants(config_kwargs: dict) -> None:
    """Refuses a config that asks for a retired model variant, naming the reason; removes the retired fields that ask
    for nothing (a variant switched off, or its loss weight)."""
    for name, reason in RETIRED_VARIANTS.items():
        if config_kwargs.pop(name, False):
            raise ValueError(f"This config sets {name}=True, a variant Gaze2Report no longer builds: {reason}")
    for name in RETIRED_FIELDS:
        config_kwargs.pop(name, None)


@strict
class Gaze2ReportConfig(PreTrainedConfig):
    r"""
    Configuration of [`Gaze2ReportForConditionalGeneration`]. The defaults build a tiny random model (a 2-layer ViT on
    64-pixel images and a 2-layer Llama) that runs on a CPU in milliseconds; real backbones come from presets in
    `configuration/` or from [`Gaze2ReportForConditionalGeneration.from_pretrained_backbones`].

    Args:
        vision_config: any `AutoModel` vision backbone whose output is a patch sequence (ViT, DINOv2, SigLIP, Swin) or
            a feature map (ConvNeXt, ResNet).
        text_config: any decoder-only causal LM configuration (Llama, Qwen2, Mistral, Gemma, Phi, GPT-2, OPT...).
        image_size: side, in pixels, of the square image the vision tower receives.
        patch_pool_size: the feature map is average-pooled to `patch_pool_size x patch_pool_size` patch nodes.
        max_fixations: fixation slots `K` the scanpath predictor decodes (and fixation nodes in the graph).
        scanpath_hidden_size, scanpath_num_layers, scanpath_num_heads: the scanpath predictor's query decoder.
        gnn_hidden_size, gnn_num_layers, gnn_num_heads: the gaze graph network.
        visual_tokens: where the language model's visual tokens come from. "graph": the gaze graph network's node
            states. "pooled_patches": the plain visual-token baseline (LLaVA's recipe), no graph network and no
            scanpath predictor (it needs `use_gaze=False`): the patch feature map average-pooled to
            `pooled_patch_grid`, as many cells as the graph has nodes, then the projector.
        fixation_patch_radius: a fixation is linked to the patch nodes whose centres lie within this distance (in
            units of the image side).
        gaze_token_id: id of the `<gaze>` placeholder replaced by the visual-gaze tokens.
        use_gaze: `False` is the ablation: no scanpath predictor and no scanpath loss; the graph keeps as many tokens,
            with fixation nodes on a fixed grid.
        gaze_loss_weight: weight of the scanpath loss where recorded fixations are given (finite, >= 0, as is
            every loss weight).
        use_fixation_findings: a head on the fixation nodes predicts the findings seen at each fixation and writes
            them into its token (`FixationFindingHead`); it also grounds the report's sentences. With
            `use_gaze=False` (the ablation's control) the head sits on the gaze-free nodes, learns the study's
            findings at every one of them and grounds nothing: what is seen, without where.
        fixation_finding_loss_weight: weight of that head's loss (with gaze, where the graph reads recorded
            fixations).
        freeze_vision_tower: keep the vision tower's weights fixed during training.
        projector_hidden_act: activation of the two-layer projector from the graph width (or, with pooled patches,
            the vision tower's) to the LM width.
    """

    model_type = "gaze2report"
    # generate's chunked prefill finds an image's placeholders through the standard name
    attribute_map = {"image_token_id": "gaze_token_id"}
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="vit", init_kwargs=TINY_VISION_CONFIG),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama", init_kwargs=TINY_TEXT_CONFIG),
    }

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    image_size: int = 64
    patch_pool_size: int = 4
    max_fixations: int = 16
    scanpath_hidden_size: int = 64
    scanpath_num_layers: int = 2
    scanpath_num_heads: int = 4
    gnn_hidden_size: int = 64
    gnn_num_layers: int = 2
    gnn_num_heads: int = 4
    visual_tokens: str = "graph"
    fixation_patch_radius: float = 0.3
    gaze_token_id: int = 3
    use_gaze: bool = True
    gaze_loss_weight: float = 1.0
    use_fixation_findings: bool = False
    fixation_finding_loss_weight: float = 1.0
    freeze_vision_tower: bool = False
    projector_hidden_act: str = "gelu"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        kwargs.pop("custom_pipelines", None)
        refuse_retired_variants(kwargs)
        super().__post_init__(**kwargs)
        if self.text_config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise ValueError(
                f"text_config has model_type {self.text_config.model_type!r}, which is not a causal "
                "language model (AutoModelForCausalLM has no class for it): use a decoder (llama, qwen2, "
                "mistral, gemma, phi, gpt2, opt...)"
            )
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        if not getattr(self, "auto_map", None):
            self.auto_map = copy.deepcopy(AUTO_MAP)
        if type(self).__module__.startswith("transformers_modules."):  # loaded as remote code: the pipeline task is
            self.custom_pipelines = copy.deepcopy(PIPELINE_ENTRY)  # found here (installed, the registered one is used)
        if self.visual_tokens not in VISUAL_TOKEN_SOURCES:
            raise ValueError(f"visual_tokens must be one of {VISUAL_TOKEN_SOURCES}, got {self.visual_tokens!r}")
        if self.visual_tokens == "pooled_patches" and (self.use_gaze or self.use_fixation_findings):
            raise ValueError(
                "visual_tokens='pooled_patches' builds neither the scanpath predictor nor the graph network, so it "
                f"needs use_gaze=False and use_fixation_findings=False (got use_gaze={self.use_gaze}, "
                f"use_fixation_findings={self.use_fixation_findings})"
            )
        for name in ("patch_pool_size", "max_fixations", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("gaze_loss_weight", "fixation_finding_loss_weight"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
        if not (math.isfinite(self.fixation_patch_radius) and self.fixation_patch_radius > 0):
            raise ValueError(
                "fixation_patch_radius must be a finite distance > 0 in units of the image side, got "
                f"{self.fixation_patch_radius!r}"
            )

    def to_dict(self) -> dict:
        output = super().to_dict()
        output["custom_pipelines"] = copy.deepcopy(PIPELINE_ENTRY)
        return output

    @property
    def num_gaze_tokens(self) -> int:
        """Visual-gaze tokens per image: one per pooled patch node and one per fixation slot (as many pooled patches
        with `visual_tokens="pooled_patches"`)."""
        return self.patch_pool_size**2 + self.max_fixations

    @property
    def grounds_findings(self) -> bool:
        """Whether the model grounds the findings it names in its scanpath: the fixation-node head on a predicted
        scanpath (`use_fixation_findings` and `use_gaze`)."""
        return self.use_fixation_findings and self.use_gaze

    @property
    def pooled_patch_grid(self) -> tuple[int, int]:
        """(rows, columns) of the grid that `visual_tokens="pooled_patches"` pools the patch feature map to: the most
        nearly square one with `num_gaze_tokens` cells, rows <= columns."""
        rows = max(row for row in range(1, math.isqrt(self.num_gaze_tokens) + 1) if self.num_gaze_tokens % row == 0)
        return rows, self.num_gaze_tokens // rows


__all__ = ["Gaze2ReportConfig"]
