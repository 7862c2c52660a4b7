"""Gaze2Report: a vision tower, a scanpath predictor and a gaze graph network feeding visual-gaze tokens to a causal
LM."""

import math
from dataclasses import dataclass

import torch
from torch import nn
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
from .finding_gaze2report import FixationFindingHead, Gaze2ReportFindingHead, finding_loss
from .scanpath_gaze2report import GazeGraphEncoder, ScanpathPredictor, ScanpathPredictorOutput
from .vision_gaze2report import build_vision_tower, encode_patch_features, patch_feature_map, vision_feature_size


@dataclass
class Gaze2ReportImageOutput(ModelOutput):
    """
    Args:
        pooler_output (`torch.FloatTensor` of shape `(batch, num_gaze_tokens, text_hidden_size)`):
            The visual-gaze tokens, projected to the language model's width.
        patch_features (`torch.FloatTensor` of shape `(batch, channels, height, width)`):
            The vision tower's patch feature map.
        finding_logits (`torch.FloatTensor` of shape `(batch, 14)`): the finding classifier's CheXpert logits (None
            without the finding conditioning).
        finding_probabilities (`torch.FloatTensor` of shape `(batch, 14)`): what the finding conditioning carries: the
            classifier's probabilities, or the study's labels where they were teacher-forced.
        scanpath (`ScanpathPredictorOutput`): the predicted scanpath (None when `use_gaze=False`).
        graph_fixations (`torch.FloatTensor` of shape `(batch, max_fixations, 3)`): fixations the graph was built on.
        graph_fixation_mask (`torch.BoolTensor` of shape `(batch, max_fixations)`).
        recorded_gaze_used (`torch.BoolTensor` of shape `(batch,)`): where the graph was built on recorded fixations.
        fixation_finding_logits (`torch.FloatTensor` of shape `(batch, max_fixations, 13)`): the fixation-node head's
            logits of the findings seen at each graph fixation (None without `use_fixation_findings`).
        last_hidden_state, hidden_states, attentions: the vision tower's, as `BaseModelOutputWithPooling` holds them
            (hidden states and attentions only when asked for with `output_hidden_states` / `output_attentions`).
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooler_output: torch.FloatTensor | None = None
    patch_features: torch.FloatTensor | None = None
    finding_logits: torch.FloatTensor | None = None
    finding_probabilities: torch.FloatTensor | None = None
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
    """`loss` = language-model loss + `gaze_loss_weight` x `scanpath_loss` + `finding_loss_weight` x `finding_loss` +
    `fixation_finding_loss_weight` x `fixation_finding_loss`; each of them apart."""

    loss: torch.FloatTensor | None = None
    lm_loss: torch.FloatTensor | None = None
    scanpath_loss: torch.FloatTensor | None = None
    finding_loss: torch.FloatTensor | None = None
    fixation_finding_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor] | None = None
    attentions: tuple[torch.FloatTensor] | None = None
    image_outputs: Gaze2ReportImageOutput | None = None


class Gaze2ReportProjector(nn.Module):
    """Two-layer MLP from the graph width to the language model's width, then a layer norm whose gain starts at the
    word embeddings' scale (`match_embedding_scale`), so that a visual-gaze token is as large as a word's embedding
    and what is written into it (the fixation-node head's findings) is not drowned."""

    def __init__(self, config: Gaze2ReportConfig):
        super().__init__()
        text_hidden_size = config.text_config.hidden_size
        self.linear_1 = nn.Linear(config.gnn_hidden_size, text_hidden_size)
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
        if isinstance(module, Gaze2ReportFindingHead):  # no conditioning until bind_processor names the findings
            init.zeros_(module.conditioning.weight)
        if isinstance(module, FixationFindingHead):  # nothing written into the tokens until bind_processor names them
            init.zeros_(module.finding_embedding.weight)


class Gaze2ReportModel(Gaze2ReportPreTrainedModel):
    """Vision tower -> patch feature map -> scanpath predictor -> gaze graph network -> projector -> language model
    (headless). The visual-gaze tokens replace the `<gaze>` placeholders of the prompt."""

    def __init__(self, config: Gaze2ReportConfig):
        super().__init__(config)
        self.vision_tower = build_vision_tower(config.vision_config)
        feature_size = vision_feature_size(config.vision_config)
        self.scanpath_predictor = ScanpathPredictor(config, feature_size) if config.use_gaze else None
        self.gaze_encoder = GazeGraphEncoder(config, feature_size)
        self.projector = Gaze2ReportProjector(config)
        self.finding_head = Gaze2ReportFindingHead(config, feature_size) if config.use_finding_conditioning else None
        self.fixation_head = FixationFindingHead(config) if config.use_fixation_findings else None
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()
        if config.freeze_vision_tower:
            self.vision_tower.requires_grad_(False)

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.FloatTensor,
        fixations: torch.FloatTensor | None = None,
        fixation_mask: torch.BoolTensor | None = None,
        use_recorded_gaze: torch.BoolTensor | None = None,
        finding_labels: torch.FloatTensor | None = None,
        finding_label_mask: torch.BoolTensor | None = None,
        use_labelled_findings: torch.BoolTensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        **kwargs,
    ) -> Gaze2ReportImageOutput:
        """Encodes images into visual-gaze tokens (`pooler_output`, as LLaVA's image features are), with the vision
        tower's states (`last_hidden_state`, and `hidden_states` / `attentions` when asked for).

        The graph is built on recorded fixations for the images where `use_recorded_gaze` is True (default: wherever
        recorded fixations are given) and on the predicted scanpath elsewhere; with `use_gaze=False`, on the gaze-free
        fixed nodes of the encoder. With the finding conditioning, the images where `use_labelled_findings` is True
        carry their labels in it instead of the classifier's probabilities.
        """
        tower_options = {
            name: True
            for name, asked in (
                ("output_hidden_states", output_hidden_states),
                ("output_attentions", output_attentions),
            )
            if asked
        }
        tower_outputs = self.vision_tower(pixel_values=pixel_values, return_dict=True, **tower_options)
        patch_features = patch_feature_map(tower_outputs.last_hidden_state)  # (batch, channels, height, width)
        batch_size = patch_features.shape[0]
        scanpath = None
        teacher_forced = torch.zeros(batch_size, dtype=torch.bool, device=patch_features.device)  # (batch,)
        if self.config.use_gaze:
            scanpath = self.scanpath_predictor(patch_features)
            graph_fixations, graph_fixation_mask = scanpath.fixations.detach(), scanpath.fixation_mask
            if fixations is not None:
                check_fixation_inputs(fixations, fixation_mask, batch_size, self.config.max_fixations)
                has_gaze = fixation_mask.any(dim=-1)  # (batch,)
                teacher_forced = has_gaze if use_recorded_gaze is None else use_recorded_gaze.bool() & has_gaze
                fixations = fixations.to(graph_fixations.dtype)
                graph_fixations = torch.where(teacher_forced[:, None, None], fixations, graph_fixations)
                graph_fixation_mask = torch.where(teacher_forced[:, None], fixation_mask, graph_fixation_mask)
        else:
            graph_fixations, graph_fixation_mask = self.gaze_encoder.gaze_free_fixations(
                batch_size, patch_features.device, patch_features.dtype
            )
        node_states = self.gaze_encoder(patch_features, graph_fixations, graph_fixation_mask)
        gaze_tokens = self.projector(node_states)  # (batch, num_gaze_tokens, text_hidden_size)
        fixation_finding_logits = None
        if self.fixation_head is not None:
            fixation_finding_logits = self.fixation_head(node_states)  # (batch, max_fixations, 13)
            gaze_tokens = self.fixation_head.write_findings(gaze_tokens, fixation_finding_logits, graph_fixation_mask)
        findings = None
        if self.finding_head is not None:
            findings = self.finding_head(patch_features, finding_labels, finding_label_mask, use_labelled_findings)
        return Gaze2ReportImageOutput(
            last_hidden_state=tower_outputs.last_hidden_state,
            pooler_output=gaze_tokens,
            patch_features=patch_features,
            finding_logits=None if findings is None else findings.logits,
            finding_probabilities=None if findings is None else findings.probabilities,
            scanpath=scanpath,
            graph_fixations=graph_fixations,
            graph_fixation_mask=graph_fixation_mask,
            recorded_gaze_used=teacher_forced,
            fixation_finding_logits=fixation_finding_logits,
            hidden_states=getattr(tower_outputs, "hidden_states", None),
            attentions=getattr(tower_outputs, "attentions", None),
        )

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
        finding_labels: torch.FloatTensor | None = None,
        finding_label_mask: torch.BoolTensor | None = None,
        use_labelled_findings: torch.BoolTensor | None = None,
        finding_probabilities: torch.FloatTensor | None = None,
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
            image_outputs = self.get_image_features(
                pixel_values,
                fixations,
                fixation_mask,
                use_recorded_gaze,
                finding_labels,
                finding_label_mask,
                use_labelled_findings,
            )
        if image_outputs is not None:
            gaze_tokens = image_outputs.pooler_output.to(inputs_embeds.device, inputs_embeds.dtype)
            placeholder_mask = self.get_placeholder_mask(input_ids, inputs_embeds, gaze_tokens)
            inputs_embeds = inputs_embeds.masked_scatter(placeholder_mask.unsqueeze(-1), gaze_tokens)
            finding_probabilities = image_outputs.finding_probabilities
            if self.finding_head is not None and finding_probabilities is None:
                raise ValueError(
                    "The encoded images carry no finding probabilities, which the finding conditioning of every "
                    "position needs; generate's chunked prefill (prefill_chunk_size) passes only the visual-gaze "
                    "tokens on, so generate without it for a model with the finding conditioning."
                )
        elif self.placeholder_positions(input_ids, inputs_embeds).any() and (
            cache is None or cache.get_seq_length() == 0
        ):
            raise ValueError("The prompt holds <gaze> placeholders but no pixel_values were given.")
        if self.finding_head is not None and finding_probabilities is not None:
            inputs_embeds = self.finding_head.condition(inputs_embeds, finding_probabilities)
        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        return Gaze2ReportModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=getattr(outputs, "cache", None),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=image_outputs,
        )


def check_fixation_inputs(fixations, fixation_mask, batch_size: int, max_fixations: int) -> None:
    if fixation_mask is None:
        raise ValueError("fixations were given without fixation_mask; the processor returns both.")
    if fixations.shape != (batch_size, max_fixations, 3) or fixation_mask.shape != (batch_size, max_fixations):
        raise ValueError(
            f"fixations {tuple(fixations.shape)} and fixation_mask {tuple(fixation_mask.shape)} must be "
            f"({batch_size}, {max_fixations}, 3) and ({batch_size}, {max_fixations}) for this batch and config."
        )


def repeat_per_image_tensors(output: ModelOutput, repeats: int, skip: tuple = ()) -> None:
    """Repeats in place each tensor of `output` (and of the outputs nested in it) `repeats` times along the batch, each
    image's copies side by side; the fields named in `skip` are left as they are."""
    for key, value in list(output.items()):
        if key in skip:
            continue
        if isinstance(value, ModelOutput):
            repeat_per_image_tensors(value, repeats)
        elif isinstance(value, torch.Tensor):
            output[key] = value.repeat_interleave(repeats, dim=0)


def input_embedding_name(language_model: nn.Module) -> str:
    """Qualified name of the language model's input embedding module (`embed_tokens`, `wte`, ...)."""
    embedding = language_model.get_input_embeddings()
    return next(name for name, module in language_model.named_modules() if module is embedding)


class Gaze2ReportForConditionalGeneration(Gaze2ReportPreTrainedModel, GenerationMixin):
    """Gaze2Report with the language-model head: trains on reports (+ recorded gaze) and generates reports."""

    _tp_plan = {"lm_head": "colwise_gather_output"}
    # The loss is a mean over this batch (report tokens, plus the per-image scanpath and finding losses), so Trainer
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

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

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
        finding_labels: torch.FloatTensor | None = None,
        finding_label_mask: torch.BoolTensor | None = None,
        use_labelled_findings: torch.BoolTensor | None = None,
        finding_probabilities: torch.FloatTensor | None = None,
        fixation_finding_labels: torch.FloatTensor | None = None,
        fixation_finding_mask: torch.BoolTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        logits_at_labels_only: bool = False,
        mm_encoder_outputs: dict | None = None,
        **kwargs,
    ) -> Gaze2ReportCausalLMOutputWithPast:
        r"""
        labels (`torch.LongTensor` of shape `(batch, sequence)`): report token ids, -100 elsewhere.
        logits_at_labels_only (`bool`): with labels, run the language-model head only at the positions whose next
            token is a label: the same loss as over every position at a fraction of the cost, and `logits` is None
            (what training does).
        fixations (`torch.FloatTensor` of shape `(batch, max_fixations, 3)`): recorded fixations, x and y in [0, 1]
            of the model's image, duration in seconds; they supervise the scanpath predictor and, where
            `use_recorded_gaze` allows, build the gaze graph.
        fixation_mask (`torch.BoolTensor` of shape `(batch, max_fixations)`): which recorded fixations are real.
        use_recorded_gaze (`torch.BoolTensor` of shape `(batch,)`): per image, build the graph from recorded gaze
            (teacher forcing) rather than the predicted scanpath.
        finding_labels, finding_label_mask (`torch.FloatTensor`, `torch.BoolTensor` of shape `(batch, 14)`): CheXpert
            targets and the mask of the usable ones (the collator's `include_finding_labels`); with the finding
            conditioning they add the finding classifier's loss.
        use_labelled_findings (`torch.BoolTensor` of shape `(batch,)`): per image, let the conditioning carry its
            labels instead of the classifier's probabilities (teacher forcing in training).
        finding_probabilities (`torch.FloatTensor` of shape `(batch, 14)`): for steps without images (generation after
            the prompt), the finding probabilities of the encoded images, which condition every position; `generate`
            passes them.
        fixation_finding_labels (`torch.FloatTensor` of shape `(batch, max_fixations, 13)`), fixation_finding_mask
            (`torch.BoolTensor` of shape `(batch, max_fixations)`): the findings seen at each recorded fixation and
            where they are known (the collator's `include_fixation_findings`); with `use_fixation_findings` they add
            the fixation-node head's loss over the images whose graph was built on the recorded fixations.
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
            finding_labels=finding_labels,
            finding_label_mask=finding_label_mask,
            use_labelled_findings=use_labelled_findings,
            finding_probabilities=finding_probabilities,
            mm_encoder_outputs=mm_encoder_outputs,
            **kwargs,
        )
        vocab_size = self.config.text_config.vocab_size
        lm_loss = loss = logits = None
        if (labels is not None or shift_labels is not None) and logits_at_labels_only:
            if shift_labels is None:
                next_labels = labels[:, 1:]  # (batch, sequence - 1): the token each position predicts
                hidden_states = outputs.last_hidden_state[:, :-1]
            else:
                next_labels, hidden_states = shift_labels, outputs.last_hidden_state
            scored = next_labels != -100  # (batch, positions)
            scored_logits = self.lm_head(hidden_states[scored])  # (scored positions, vocab)
            lm_loss = self.loss_function(
                logits=scored_logits, labels=None, shift_labels=next_labels[scored], vocab_size=vocab_size
            )
        else:
            hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
            logits = self.lm_head(hidden_states)  # (batch, kept positions, vocab)
            if labels is not None or shift_labels is not None:
                lm_loss = self.loss_function(
                    logits=logits, labels=labels, shift_labels=shift_labels, vocab_size=vocab_size
                )
        image_outputs, scanpath_loss, image_finding_loss = outputs.image_outputs, None, None
        if image_outputs is not None and image_outputs.scanpath is not None and fixations is not None:
            scanpath_loss = self.model.scanpath_predictor.loss(image_outputs.scanpath, fixations, fixation_mask).loss
        if image_outputs is not None and image_outputs.finding_logits is not None and finding_labels is not None:
            if finding_label_mask is None:
                raise ValueError("finding_labels were given without finding_label_mask; the collator returns both.")
            image_finding_loss = finding_loss(image_outputs.finding_logits, finding_labels, finding_label_mask)
        fixation_finding_loss = None
        fixation_logits = None if image_outputs is None else image_outputs.fixation_finding_logits
        if fixation_logits is not None and fixation_finding_labels is not None:
            if fixation_finding_mask is None:
                raise ValueError(
                    "fixation_finding_labels were given without fixation_finding_mask; the collator returns both."
                )
            # the targets belong to the recorded fixations: an image whose graph read its predicted scanpath has none
            on_recorded_gaze = fixation_finding_mask.bool() & image_outputs.recorded_gaze_used[:, None]
            fixation_finding_loss = finding_loss(fixation_logits, fixation_finding_labels, on_recorded_gaze)
        if lm_loss is not None:
            loss = lm_loss
            if scanpath_loss is not None:
                loss = loss + self.config.gaze_loss_weight * scanpath_loss
            if image_finding_loss is not None:
                loss = loss + self.config.finding_loss_weight * image_finding_loss
            if fixation_finding_loss is not None:
                loss = loss + self.config.fixation_finding_loss_weight * fixation_finding_loss
        return Gaze2ReportCausalLMOutputWithPast(
            loss=loss,
            lm_loss=lm_loss,
            scanpath_loss=scanpath_loss,
            finding_loss=image_finding_loss,
            fixation_finding_loss=fixation_finding_loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=outputs.image_outputs,
        )

    def prepare_inputs_for_generation(self, *args, **kwargs):
        """GenerationMixin's inputs, plus, on the steps after the prompt, the finding probabilities of the images
        encoded for the prompt: the finding conditioning applies to every position, generated ones included."""
        model_inputs = super().prepare_inputs_for_generation(*args, **kwargs)
        image_outputs = (kwargs.get("mm_encoder_outputs") or {}).get("image")
        if image_outputs is not None and "mm_encoder_outputs" not in model_inputs:
            model_inputs["finding_probabilities"] = image_outputs.finding_probabilities
        return model_inputs

    def _expand_multimodal_outputs(self, input_ids, mm_encoder_output, expand_size=1, inputs_embeds=None):
        """GenerationMixin expands only the visual-gaze tokens (`pooler_output`) of the images it encoded before the
        prompt, for beam search and `num_return_sequences`. Each prompt holds one image, so every other per-image
        tensor (the finding probabilities the conditioning reads, the scanpath, ...) repeats the same way."""
        mm_encoder_output = super()._expand_multimodal_outputs(input_ids, mm_encoder_output, expand_size, inputs_embeds)
        image_outputs = mm_encoder_output.get("image")
        if image_outputs is not None:
            repeat_per_image_tensors(image_outputs, expand_size, skip=("pooler_output",))
        return mm_encoder_output

    @torch.no_grad()
    def predict_scanpath(self, pixel_values: torch.FloatTensor) -> tuple[torch.FloatTensor, torch.BoolTensor]:
        """The predicted scanpath: fixations (batch, max_fixations, 3), x and y in [0, 1] of the model's image and
        duration in seconds, and the mask (batch, max_fixations) of the valid ones (a non-empty prefix)."""
        if not self.config.use_gaze:
            raise ValueError(
                "This model was built with use_gaze=False (the no-gaze ablation): it predicts no scanpath."
            )
        scanpath = self.model.scanpath_predictor(encode_patch_features(self.model.vision_tower, pixel_values))
        return scanpath.fixations, scanpath.fixation_mask

    @torch.no_grad()
    def predict_fixation_findings(
        self, pixel_values: torch.FloatTensor
    ) -> tuple[torch.FloatTensor, torch.BoolTensor, torch.FloatTensor]:
        """The predicted scanpath, as `predict_scanpath` gives it, and the fixation-node head's probabilities
        (batch, max_fixations, 13) of the findings (`FINDING_OBSERVATIONS`) seen at each of its fixations."""
        if not self.config.use_fixation_findings:
            raise ValueError(
                "This model was built without the fixation-node head (use_fixation_findings=False): its fixations say "
                "nothing about what is seen there."
            )
        image_outputs = self.model.get_image_features(pixel_values)
        probabilities = torch.sigmoid(image_outputs.fixation_finding_logits.float())  # (batch, max_fixations, 13)
        return image_outputs.graph_fixations, image_outputs.graph_fixation_mask, probabilities

    def bind_processor(self, processor) -> None:
        """Makes a newly built model agree with `processor`: the `<gaze>` token id, the vocabulary size (embeddings
        grow when the tokenizer gained tokens), the number of visual-gaze tokens and fixation slots, the projector's
        scale set to the word embeddings', and the finding conditioning's and the fixation-node head's columns set to
        the findings' names under its tokenizer. The builders (`build_from_preset`) call it; on a trained model it
        would reset those."""
        if (
            processor.num_gaze_tokens != self.config.num_gaze_tokens
            or processor.max_fixations != self.config.max_fixations
        ):
            raise ValueError(
                f"The processor makes {processor.num_gaze_tokens} placeholders and {processor.max_fixations} fixation "
                f"slots; the model expects {self.config.num_gaze_tokens} and {self.config.max_fixations}."
            )
        if len(processor.tokenizer) > self.get_input_embeddings().num_embeddings:
            self.resize_token_embeddings(len(processor.tokenizer), mean_resizing=True)
        self.config.gaze_token_id = processor.gaze_token_id
        self.model.projector.match_embedding_scale(self.get_input_embeddings())
        if self.model.finding_head is not None:
            self.model.finding_head.embed_observation_names(self.get_input_embeddings(), processor.tokenizer)
        if self.model.fixation_head is not None:
            self.model.fixation_head.embed_finding_names(self.get_input_embeddings(), processor.tokenizer)


__all__ = [
    "Gaze2ReportPreTrainedModel",
    "Gaze2ReportModel",
    "Gaze2ReportForConditionalGeneration",
    "Gaze2ReportImageOutput",
]
