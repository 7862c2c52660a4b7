"""Gaze2Report: a vision tower, a scanpath predictor and a gaze graph network feeding visual-gaze tokens to a causal
LM (or, as the plain baseline, the vision tower's pooled patch features)."""

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn.dense.linear import Linear as GraphLinear
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.modeling_outputs import ModelOutput
from transformers.modeling_utils import slice_logits_to_keep
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .checkpoint_gaze2report import Gaze2ReportCheckpointMixin
from .configuration_gaze2report import Gaze2ReportConfig
from .finding_gaze2report import FixationFindingHead, finding_loss, study_finding_targets
from .scanpath_gaze2report import GazeGraphEncoder, ScanpathPredictor, ScanpathPredictorOutput, pool_patch_features
from .vision_gaze2report import build_vision_tower, patch_feature_map, vision_feature_size


@dataclass
class Gaze2ReportImageOutput(ModelOutput):
    """
    Args:
        pooler_output (`torch.FloatTensor` of shape `(batch, num_gaze_tokens, text_hidden_size)`):
            The visual-gaze tokens, projected to the language model's width.
        scanpath (`ScanpathPredictorOutput`): the predicted scanpath (None when `use_gaze=False`).
        graph_fixations (`torch.FloatTensor` of shape `(batch, max_fixations, 3)`): fixations the graph was built on:
            the predicted scanpath where no recorded gaze was used (what inference reports); None without a graph
            (`visual_tokens="pooled_patches"`).
        graph_fixation_mask (`torch.BoolTensor` of shape `(batch, max_fixations)`), None without a graph.
        recorded_gaze_used (`torch.BoolTensor` of shape `(batch,)`): where the graph was built on recorded fixations.
        fixation_finding_logits (`torch.FloatTensor` of shape `(batch, max_fixations, 13)`): the fixation-node head's
            logits of the findings seen at each graph fixation (None without `use_fixation_findings`).
        last_hidden_state, hidden_states, attentions: the vision tower's, as `BaseModelOutputWithPooling` holds them
            (hidden states and attentions only when asked for with `output_hidden_states` / `output_attentions`).
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    scanpath: ScanpathPredictorOutput | None = None
    graph_fixations: torch.FloatTensor | None = None
    graph_fixation_mask: torch.BoolTensor | None = None
    recorded_gaze_used: torch.BoolTensor | None = None
    fixation_finding_logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor] | None = None
    attentions: tuple[torch.FloatTensor] | None = None


@dataclass
class Gaze2ReportModelOutputWithPast(ModelOutput):
    last_hidden_state: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor] | None = None
    attentions: tuple[torch.FloatTensor] | None = None
    image_outputs: Gaze2ReportImageOutput | None = None


@dataclass
class Gaze2ReportCausalLMOutputWithPast(ModelOutput):
    """`loss` = language-model loss + the gaze loss (`GazeLossOutput`); each of them apart."""

    loss: torch.FloatTensor | None = None
    lm_loss: torch.FloatTensor | None = None
    scanpath_loss: torch.FloatTensor | None = None
    fixation_finding_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor] | None = None
    attentions: tuple[torch.FloatTensor] | None = None
    image_outputs: Gaze2ReportImageOutput | None = None


@dataclass
class GazeLossOutput(ModelOutput):
    """`loss` = `gaze_loss_weight` x `scanpath_loss` + `fixation_finding_loss_weight` x `fixation_finding_loss`, over
    the parts that apply (None when none does)."""

    loss: torch.FloatTensor | None = None
    scanpath_loss: torch.FloatTensor | None = None
    fixation_finding_loss: torch.FloatTensor | None = None


class Gaze2ReportProjector(nn.Module):
    """Two-layer MLP from `input_size` (the graph's width, or the vision tower's for pooled patches) to the language
    model's width, then a layer norm whose gain starts at the word embeddings' scale (`match_embedding_scale`), so that
    a visual-gaze token is as large as a word's embedding and what is written into it (the fixation-node head's
    findings) is not drowned."""

    def __init__(self, config: Gaze2ReportConfig, input_size: int):
        super().__init__()
        text_hidden_size = config.text_config.hidden_size
        self.linear_1 = nn.Linear(input_size, text_hidden_size)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(text_hidden_size, text_hidden_size)
        self.norm = nn.LayerNorm(text_hidden_size)

    def forward(self, node_states: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear_2(self.act(self.linear_1(node_states))))

    @torch.no_grad()
    def match_embedding_scale(self, input_embeddings: nn.Embedding) -> None:
        """Sets the norm's gain to the root mean square of the word embeddings' entries."""
        self.norm.weight.fill_(input_embeddings.weight.float().pow(2).mean().sqrt())


class Gaze2ReportPreTrainedModel(Gaze2ReportCheckpointMixin, PreTrainedModel):
    config: Gaze2ReportConfig
    config_class = Gaze2ReportConfig
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["GazeGraphEncoder", "ScanpathPredictor"]
    _skip_keys_device_placement = ["cache"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, GraphLinear):  # the graph convolutions' projections, as torch_geometric initialises them
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.in_channels)
                init.uniform_(module.bias, -bound, bound)
        if isinstance(module, GazeGraphEncoder):
            init.normal_(module.padding_embedding, mean=0.0, std=0.02)
        if isinstance(module, FixationFindingHead):  # nothing written into the tokens until bind_processor names them
            init.zeros_(module.finding_embedding.weight)


class Gaze2ReportModel(Gaze2ReportPreTrainedModel):
    """Vision tower -> patch feature map -> scanpath predictor -> gaze graph network -> projector -> language model
    (headless); with `visual_tokens="pooled_patches"`, the patch feature map pooled to as many tokens goes straight to
    the projector (LLaVA's recipe). The visual-gaze tokens replace the `<gaze>` placeholders of the prompt."""

    def __init__(self, config: Gaze2ReportConfig):
        super().__init__(config)
        self.vision_tower = build_vision_tower(config.vision_config)
        feature_size = vision_feature_size(config.vision_config)
        self.scanpath_predictor = ScanpathPredictor(config, feature_size) if config.use_gaze else None
        uses_graph = config.visual_tokens == "graph"
        self.gaze_encoder = GazeGraphEncoder(config, feature_size) if uses_graph else None
        self.projector = Gaze2ReportProjector(config, config.gnn_hidden_size if uses_graph else feature_size)
        self.fixation_head = FixationFindingHead(config) if config.use_fixation_findings else None
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()
        if config.freeze_vision_tower:
            self.vision_tower.requires_grad_(False)

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.FloatTensor,
        fixations: torch.FloatTensor | None = None,
        fixation_mask: torch.BoolTensor | None = None,
        use_recorded_gaze: torch.BoolTensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> Gaze2ReportImageOutput:
        """Encodes images into visual-gaze tokens (`pooler_output`, as LLaVA's image features are), with the vision
        tower's states (`last_hidden_state`, and `hidden_states` / `attentions` when asked for).

        The graph is built on recorded fixations (validated by the processor) for the images where
        `use_recorded_gaze` is True (default: wherever recorded fixations are given) and on the predicted scanpath
        elsewhere; with `use_gaze=False`, on the gaze-free fixed nodes of the encoder. With
        `visual_tokens="pooled_patches"` there is no graph: the patch feature map is average-pooled to
        `config.pooled_patch_grid` and projected.
        """
        tower_options = {"output_hidden_states": output_hidden_states, "output_attentions": output_attentions}
        tower_options = {name: True for name, asked in tower_options.items() if asked}
        tower_outputs = self.vision_tower(pixel_values=pixel_values, return_dict=True, **tower_options)
        patch_features = patch_feature_map(tower_outputs.last_hidden_state)  # (batch, channels, height, width)
        batch_size = patch_features.shape[0]
        scanpath = graph_fixations = graph_fixation_mask = None
        recorded_gaze_used = torch.zeros(batch_size, dtype=torch.bool, device=patch_features.device)  # (batch,)
        if self.config.use_gaze:
            scanpath = self.scanpath_predictor(patch_features)
            graph_fixations, graph_fixation_mask = scanpath.fixations.detach(), scanpath.fixation_mask
            if fixations is not None:
                if fixation_mask is None:
                    raise ValueError("fixations were given without fixation_mask; the processor returns both.")
                recorded_gaze_used = fixation_mask.any(dim=-1)  # (batch,)
                if use_recorded_gaze is not None:
                    recorded_gaze_used = recorded_gaze_used & use_recorded_gaze.bool()
                fixations = fixations.to(graph_fixations.dtype)
                graph_fixations = torch.where(recorded_gaze_used[:, None, None], fixations, graph_fixations)
                graph_fixation_mask = torch.where(recorded_gaze_used[:, None], fixation_mask, graph_fixation_mask)
        elif self.gaze_encoder is not None:
            graph_fixations, graph_fixation_mask = self.gaze_encoder.gaze_free_fixations(
                batch_size, patch_features.device, patch_features.dtype
            )
        if self.gaze_encoder is None:
            token_states = pool_patch_features(patch_features, self.config.pooled_patch_grid)  # (batch, tokens, C)
        else:
            token_states = self.gaze_encoder(patch_features, graph_fixations, graph_fixation_mask)
        gaze_tokens = self.projector(token_states)  # (batch, num_gaze_tokens, text_hidden_size)
        fixation_finding_logits = None
        if self.fixation_head is not None:
            fixation_finding_logits = self.fixation_head(token_states)  # (batch, max_fixations, 13)
            gaze_tokens = self.fixation_head.write_findings(gaze_tokens, fixation_finding_logits, graph_fixation_mask)
        return Gaze2ReportImageOutput(
            last_hidden_state=tower_outputs.last_hidden_state,
            pooler_output=gaze_tokens,
            scanpath=scanpath,
            graph_fixations=graph_fixations,
            graph_fixation_mask=graph_fixation_mask,
            recorded_gaze_used=recorded_gaze_used,
            fixation_finding_logits=fixation_finding_logits,
            hidden_states=getattr(tower_outputs, "hidden_states", None),
            attentions=getattr(tower_outputs, "attentions", None),
        )

    def gaze_loss(
        self,
        image_outputs: Gaze2ReportImageOutput,
        fixations: torch.FloatTensor | None,
        fixation_mask: torch.BoolTensor | None,
        fixation_finding_labels: torch.FloatTensor | None = None,
        fixation_finding_mask: torch.BoolTensor | None = None,
        finding_labels: torch.FloatTensor | None = None,
        finding_label_mask: torch.BoolTensor | None = None,
    ) -> GazeLossOutput:
        """The losses that gaze gives, weighted by the config: the scanpath predictor's against the recorded
        `fixations`, and the fixation-node head's against the findings seen at them (`fixation_finding_labels`),
        counted only where the graph read the recorded fixations (the targets belong to them). Without gaze
        (`use_gaze=False`) the head sits on the gaze-free nodes and its targets are the study's findings at every node
        (`study_finding_targets` of the collator's `finding_labels`): what is seen, not where."""
        scanpath_loss = fixation_finding_loss = None
        if image_outputs.scanpath is not None and fixations is not None:
            scanpath_loss = self.scanpath_predictor.loss(image_outputs.scanpath, fixations, fixation_mask).loss
        finding_logits = image_outputs.fixation_finding_logits  # (batch, max_fixations, 13) or None
        if finding_logits is not None and not self.config.use_gaze and finding_labels is not None:
            if finding_label_mask is None:
                raise ValueError("finding_labels were given without finding_label_mask; the collator returns both.")
            targets, known = study_finding_targets(finding_labels, finding_label_mask, finding_logits.shape[1])
            fixation_finding_loss = finding_loss(finding_logits, targets, known)
        elif finding_logits is not None and self.config.use_gaze and fixation_finding_labels is not None:
            if fixation_finding_mask is None:
                raise ValueError(
                    "fixation_finding_labels were given without fixation_finding_mask; the collator returns both."
                )
            on_recorded_gaze = fixation_finding_mask.bool() & image_outputs.recorded_gaze_used[:, None]
            fixation_finding_loss = finding_loss(finding_logits, fixation_finding_labels, on_recorded_gaze)
        weights = (self.config.gaze_loss_weight, self.config.fixation_finding_loss_weight)
        weighted = [
            weight * part for weight, part in zip(weights, (scanpath_loss, fixation_finding_loss)) if part is not None
        ]
        return GazeLossOutput(sum(weighted) if weighted else None, scanpath_loss, fixation_finding_loss)

    def placeholder_positions(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor
    ) -> torch.BoolTensor:
        """(batch, sequence): where the `<gaze>` placeholders are, by token id, or, without input_ids, where an input
        embedding equals the placeholder token's (as LLaVA finds its image tokens)."""
        if input_ids is not None:
            return input_ids == self.config.gaze_token_id
        placeholder = self.get_input_embeddings()(torch.tensor(self.config.gaze_token_id, device=inputs_embeds.device))
        return (inputs_embeds == placeholder.to(inputs_embeds.dtype)).all(dim=-1)

    def get_placeholder_mask(
        self, input_ids: torch.LongTensor | None, inputs_embeds: torch.Tensor, gaze_tokens: torch.Tensor
    ) -> torch.BoolTensor:
        """Where the `<gaze>` placeholders are, checking there is one per visual-gaze token."""
        placeholder_mask = self.placeholder_positions(input_ids, inputs_embeds)  # (batch, sequence)
        num_placeholders, num_tokens = int(placeholder_mask.sum()), gaze_tokens.shape[0] * gaze_tokens.shape[1]
        if num_placeholders != num_tokens:
            raise ValueError(
                f"The prompt holds {num_placeholders} <gaze> placeholders (token id {self.config.gaze_token_id}) but "
                f"the images give {num_tokens} visual-gaze tokens ({gaze_tokens.shape[1]} per image); the "
                "processor's num_gaze_tokens must equal the config's patch_pool_size**2 + max_fixations = "
                f"{self.config.num_gaze_tokens}."
            )
        return placeholder_mask

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        fixations: torch.FloatTensor | None = None,
        fixation_mask: torch.BoolTensor | None = None,
        use_recorded_gaze: torch.BoolTensor | None = None,
        mm_encoder_outputs: dict | None = None,
        **kwargs,
    ) -> Gaze2ReportModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(
                "Pass exactly one of input_ids and inputs_embeds (where the <gaze> placeholders are the "
                "placeholder token's embedding)."
            )
        if pixel_values is not None and mm_encoder_outputs:
            raise ValueError("Pass either pixel_values or mm_encoder_outputs, not both.")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)  # (batch, sequence, text_hidden_size)
        image_outputs = (mm_encoder_outputs or {}).get("image")
        if image_outputs is None and pixel_values is not None:
            if pixel_values.shape[0] != inputs_embeds.shape[0]:
                raise ValueError(
                    f"pixel_values holds {pixel_values.shape[0]} images but the input {inputs_embeds.shape[0]} prompts."
                )
            image_outputs = self.get_image_features(pixel_values, fixations, fixation_mask, use_recorded_gaze)
        if image_outputs is not None:
            gaze_tokens = image_outputs.pooler_output.to(inputs_embeds.device, inputs_embeds.dtype)
            placeholder_mask = self.get_placeholder_mask(input_ids, inputs_embeds, gaze_tokens)
            inputs_embeds = inputs_embeds.masked_scatter(placeholder_mask.unsqueeze(-1), gaze_tokens)
        elif (cache is None or cache.get_seq_length() == 0) and self.placeholder_positions(
            input_ids, inputs_embeds
        ).any():
            raise ValueError("The prompt holds <gaze> placeholders but no pixel_values were given.")
        outputs = self.language_model(
            attention_mask=attention_mask, position_ids=position_ids, cache=cache, inputs_embeds=inputs_embeds, **kwargs
        )
        return Gaze2ReportModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=getattr(outputs, "cache", None),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=image_outputs,
        )


def check_processor_fits(config: Gaze2ReportConfig, processor) -> None:
    """Refuses a processor that makes inputs of another shape than the model reads: other placeholder or fixation-slot
    counts, or images of another size than `config.image_size`."""
    if processor.num_gaze_tokens != config.num_gaze_tokens or processor.max_fixations != config.max_fixations:
        raise ValueError(
            f"The processor makes {processor.num_gaze_tokens} placeholders and {processor.max_fixations} fixation "
            f"slots; the model expects {config.num_gaze_tokens} and {config.max_fixations}."
        )
    pixel_size = getattr(processor, "pixel_size", None)
    if pixel_size is not None and pixel_size != (config.image_size, config.image_size):
        raise ValueError(
            f"The processor makes {pixel_size[0]}x{pixel_size[1]} images; the model reads {config.image_size}x"
            f"{config.image_size} (config image_size): pair the model with the processor it was saved with."
        )


def input_embedding_name(language_model: nn.Module) -> str:
    """Qualified name of the language model's input embedding module (`embed_tokens`, `wte`, ...)."""
    embedding = language_model.get_input_embeddings()
    return next(name for name, module in language_model.named_modules() if module is embedding)


class Gaze2ReportForConditionalGeneration(Gaze2ReportPreTrainedModel, GenerationMixin):
    """Gaze2Report with the language-model head: trains on reports (+ recorded gaze) and generates reports."""

    _tp_plan = {"lm_head": "colwise_gather_output"}
    # The loss is a mean over this batch (report tokens, plus the per-image gaze losses), so Trainer
    # must scale it for gradient accumulation and several processes itself rather than pass `num_items_in_batch`.
    accepts_loss_kwargs = False

    def __init__(self, config: Gaze2ReportConfig):
        super().__init__(config)
        self.model = Gaze2ReportModel(config)
        output_size = getattr(config.text_config, "word_embed_proj_dim", None) or config.text_config.hidden_size
        self.lm_head = nn.Linear(output_size, config.text_config.vocab_size, bias=False)
        self._tied_weights_keys = {
            "lm_head.weight": f"model.language_model.{input_embedding_name(self.model.language_model)}.weight"
        }
        self.post_init()

    def get_image_features(self, pixel_values, fixations=None, fixation_mask=None, use_recorded_gaze=None, **kwargs):
        return self.model.get_image_features(pixel_values, fixations, fixation_mask, use_recorded_gaze, **kwargs)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        fixations: torch.FloatTensor | None = None,
        fixation_mask: torch.BoolTensor | None = None,
        use_recorded_gaze: torch.BoolTensor | None = None,
        fixation_finding_labels: torch.FloatTensor | None = None,
        fixation_finding_mask: torch.BoolTensor | None = None,
        finding_labels: torch.FloatTensor | None = None,
        finding_label_mask: torch.BoolTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict | None = None,
        **kwargs,
    ) -> Gaze2ReportCausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(batch, sequence)`): report token ids, -100 elsewhere. With
            `logits_to_keep` (any form `slice_logits_to_keep` takes) the loss is over the kept positions only, position
            p scored against the label at p + 1: a boolean (batch, sequence) mask of the positions whose next token is
            a label gives the full loss at a fraction of the language-model head's cost (what training passes).
        fixations (`torch.FloatTensor` of shape `(batch, max_fixations, 3)`): recorded fixations, x and y in [0, 1]
            of the model's image, duration in seconds; they supervise the scanpath predictor and, where
            `use_recorded_gaze` allows, build the gaze graph.
        fixation_mask (`torch.BoolTensor` of shape `(batch, max_fixations)`): which recorded fixations are real.
        use_recorded_gaze (`torch.BoolTensor` of shape `(batch,)`): per image, build the graph from recorded gaze
            (teacher forcing) rather than the predicted scanpath.
        fixation_finding_labels (`torch.FloatTensor` of shape `(batch, max_fixations, 13)`), fixation_finding_mask
            (`torch.BoolTensor` of shape `(batch, max_fixations)`): the findings seen at each recorded fixation and
            where they are known (the collator's `include_fixation_findings`); with `use_fixation_findings` they add
            the fixation-node head's loss (`gaze_loss`).
        finding_labels, finding_label_mask (`torch.FloatTensor`, `torch.BoolTensor` of shape `(batch, 14)`): the
            study's CheXpert labels (the collator's `include_finding_labels`): the fixation-node head's targets at
            every gaze-free node of a model with `use_fixation_findings` and `use_gaze=False`.
        """
        shift_labels = kwargs.pop("shift_labels", None)  # (batch, sequence): pre-shifted labels (context parallelism)
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            fixations=fixations,
            fixation_mask=fixation_mask,
            use_recorded_gaze=use_recorded_gaze,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)  # (batch, kept positions, vocab)
        lm_loss, gaze_losses = None, GazeLossOutput()
        if labels is not None or shift_labels is not None:
            if shift_labels is None:
                shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]  # (batch, sequence): the token p predicts
            lm_loss = self.loss_function(
                logits=logits,
                labels=None,
                shift_labels=slice_logits_to_keep(shift_labels[..., None], logits_to_keep)[..., 0].contiguous(),
                vocab_size=self.config.text_config.vocab_size,
            )
        if outputs.image_outputs is not None:
            gaze_losses = self.model.gaze_loss(
                outputs.image_outputs,
                fixations,
                fixation_mask,
                fixation_finding_labels,
                fixation_finding_mask,
                finding_labels,
                finding_label_mask,
            )
        return Gaze2ReportCausalLMOutputWithPast(
            loss=lm_loss if lm_loss is None or gaze_losses.loss is None else lm_loss + gaze_losses.loss,
            lm_loss=lm_loss,
            scanpath_loss=gaze_losses.scanpath_loss,
            fixation_finding_loss=gaze_losses.fixation_finding_loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=outputs.image_outputs,
        )

    def bind_processor(self, processor) -> None:
        """Makes a newly built model agree with `processor`: the `<gaze>` token id, the vocabulary size (embeddings
        grow when the tokenizer gained tokens), the number of visual-gaze tokens and fixation slots, the projector's
        scale set to the word embeddings', and the fixation-node head's columns set to the findings' names under its
        tokenizer. The builders (`build_from_preset`) call it; on a trained model it would reset those."""
        check_processor_fits(self.config, processor)
        if len(processor.tokenizer) > self.get_input_embeddings().num_embeddings:
            self.resize_token_embeddings(len(processor.tokenizer), mean_resizing=True)
        self.config.gaze_token_id = processor.gaze_token_id
        self.model.projector.match_embedding_scale(self.get_input_embeddings())
        if self.model.fixation_head is not None:
            self.model.fixation_head.embed_finding_names(self.get_input_embeddings(), processor.tokenizer)


# fmt: off
__all__ = ["Gaze2ReportPreTrainedModel", "Gaze2ReportModel", "Gaze2ReportForConditionalGeneration",
           "Gaze2ReportImageOutput", "GazeLossOutput"]
# fmt: on
