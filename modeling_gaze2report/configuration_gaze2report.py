"""Configuration of Gaze2Report: a vision tower, a scanpath predictor and a gaze graph network around a causal LM."""

import copy

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

# The pipeline a saved directory declares, for `pipeline(model=dir, trust_remote_code=True)`.
PIPELINE_ENTRY = {
    "gaze2report": {
        "impl": "pipeline_gaze2report.Gaze2ReportPipeline",
        "pt": ["AutoModelForImageTextToText"],
        "tf": [],
        "type": "multimodal",
    }
}


@strict
class Gaze2ReportConfig(PreTrainedConfig):
    r"""
    Configuration of [`Gaze2ReportForConditionalGeneration`]. The defaults build a tiny random model (a 2-layer ViT on
    64-pixel images and a 2-layer Llama) that runs on a CPU in milliseconds; real backbones come from presets in
    `configuration/` or from [`Gaze2ReportForConditionalGeneration.from_pretrained_backbones`].

    Args:
        vision_config (`dict` or `PreTrainedConfig`):
            Any vision backbone loadable with `AutoModel` whose output is a patch sequence (ViT, DINOv2, SigLIP vision,
            Swin) or a feature map (ConvNeXt, ResNet).
        text_config (`dict` or `PreTrainedConfig`):
            Any decoder-only causal LM configuration (Llama, Qwen2, Mistral, Gemma, Phi, GPT-2, OPT...).
        image_size (`int`):
            Side, in pixels, of the square image the vision tower receives.
        patch_pool_size (`int`):
            The vision feature map is average-pooled to `patch_pool_size x patch_pool_size` patch nodes.
        max_fixations (`int`):
            Number of fixation slots `K` the scanpath predictor decodes in parallel (and fixation nodes in the graph).
        scanpath_hidden_size, scanpath_num_layers, scanpath_num_heads:
            Width and depth of the scanpath predictor's query decoder.
        gnn_hidden_size, gnn_num_layers, gnn_num_heads:
            Width and depth of the gaze graph network.
        fixation_patch_radius (`float`):
            A fixation is linked to every patch node whose centre lies within this distance (in units of the image
            side) of it.
        gaze_token_id (`int`):
            Id of the `<gaze>` placeholder token replaced by the visual-gaze tokens.
        use_gaze (`bool`):
            `False` is the ablation: the same number of tokens built from patch features alone (fixation nodes sit on
            a fixed grid with no gaze information and no scanpath loss).
        gaze_loss_weight (`float`):
            Weight of the scanpath loss added to the language-model loss when recorded fixations are given.
        use_finding_conditioning (`bool`):
            Add a finding classifier on the vision feature map (a probability per CheXpert observation) whose learned
            embedding is added to every position's input embedding (see `Gaze2ReportFindingHead`).
        finding_loss_weight (`float`):
            Weight of the finding classifier's CheXpert loss added to the language-model loss when labels are given.
        use_fixation_findings (`bool`):
            Add a head on the graph network's fixation nodes that predicts the findings seen at each fixation (see
            `FixationFindingHead`); recorded gaze with the dictation aligned to it trains it, so the visual-gaze
            tokens carry the findings in scanpath order, and it grounds the report's sentences at inference.
        fixation_finding_loss_weight (`float`):
            Weight of the fixation-node head's loss, where a graph is built on recorded fixations with known findings.
        freeze_vision_tower (`bool`):
            Keep the vision tower's weights fixed during training.
        projector_hidden_act (`str`):
            Activation of the two-layer projector from the graph width to the LM width.
    """

    model_type = "gaze2report"
    # generate's chunked prefill finds an image's placeholders through the standard name
    attribute_map = {"image_token_id": "gaze_token_id"}
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="vit",
            init_kwargs={
                "image_size": 64,
                "patch_size": 8,
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "num_channels": 3,
            },
        ),
        "text_config": SubConfigSpec(
            config_class=AutoConfig,
            model_type="llama",
            init_kwargs={
                "vocab_size": 1024,
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 512,
                "tie_word_embeddings": True,
            },
        ),
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
    fixation_patch_radius: float = 0.3
    gaze_token_id: int = 3
    use_gaze: bool = True
    gaze_loss_weight: float = 1.0
    use_finding_conditioning: bool = False
    finding_loss_weight: float = 1.0
    use_fixation_findings: bool = False
    fixation_finding_loss_weight: float = 1.0
    freeze_vision_tower: bool = False
    projector_hidden_act: str = "gelu"
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        kwargs.pop("custom_pipelines", None)
        if "use_finding_tokens" in kwargs:  # the name of `use_finding_conditioning` in checkpoints before 0.2
            legacy_flag, checklist = kwargs.pop("use_finding_tokens"), kwargs.pop("finding_checklist", True)
            if legacy_flag and checklist:
                raise ValueError(
                    "This config writes the finding checklist (use_finding_tokens=True, "
                    "finding_checklist=True), a variant Gaze2Report no longer builds"
                )
            self.use_finding_conditioning = legacy_flag
        super().__post_init__(**kwargs)
        if self.text_config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise ValueError(
                f"text_config has model_type {self.text_config.model_type!r}, which is not a causal "
                "language model (AutoModelForCausalLM has no class for it): use a decoder (llama, qwen2, "
                "mistral, gemma, phi, gpt2, opt...)"
            )
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True
        # Written into config.json so that a saved directory loads with trust_remote_code where the package is absent.
        if not getattr(self, "auto_map", None):
            self.auto_map = {
                "AutoConfig": "configuration_gaze2report.Gaze2ReportConfig",
                "AutoModel": "modeling_gaze2report.Gaze2ReportModel",
                "AutoModelForImageTextToText": "modeling_gaze2report.Gaze2ReportForConditionalGeneration",
            }
        if type(self).__module__.startswith("transformers_modules."):  # loaded as remote code: the pipeline task is
            self.custom_pipelines = copy.deepcopy(PIPELINE_ENTRY)  # found here (installed, the registered one is used)
        if self.use_fixation_findings and not self.use_gaze:
            raise ValueError(
                "use_fixation_findings=True needs use_gaze=True: without gaze the fixation nodes sit on a fixed grid "
                "and see nothing a radiologist looked at"
            )
        for name in ("patch_pool_size", "max_fixations", "image_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        output = super().to_dict()
        output["custom_pipelines"] = copy.deepcopy(PIPELINE_ENTRY)
        return output

    @property
    def num_gaze_tokens(self) -> int:
        """Visual-gaze tokens per image: one per pooled patch node and one per fixation slot."""
        return self.patch_pool_size**2 + self.max_fixations


__all__ = ["Gaze2ReportConfig"]
