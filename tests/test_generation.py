"""What transformers' generation tester (`GenerationTesterMixin` in tests/generation/test_utils.py, which the sdist
test_conformance.py unpacks does not hold) would check, run on the paths Gaze2Report overrides: the images are encoded
before the prompt and their visual-gaze tokens replace the `<gaze>` placeholders, from pixel_values, from precomputed
image features (`mm_encoder_outputs`) or in a prompt given as embeddings.

Covered, each against a hand-run of the forward pass or the same generation done another way:
- greedy decoding, with and without the cache, and the logits it returns (test_greedy_generate,
  test_greedy_generate_dict_outputs, test_greedy_generate_dict_outputs_use_cache);
- static and dynamic caches (test_generate_with_static_cache), continuing from a returned cache
  (test_generate_continue_from_past_key_values);
- sampling (test_sample_generate, test_sample_generate_dict_output) and beam sampling (test_beam_sample_generate);
- beam search and its scores (test_beam_search_generate, test_beam_search_generate_dict_output);
- left padding (test_left_padding_compatibility) and `num_return_sequences` with beams and with sampling;
- stopping: at eos row by row, at `max_new_tokens`, by a `StoppingCriteria`;
- generation from `inputs_embeds`, greedy and with beams (test_generate_from_inputs_embeds), and from precomputed
  image features.

Not covered: assisted and prompt-lookup decoding (test_assisted_decoding_*, test_prompt_lookup_decoding_*), quantized
caches (test_generate_with_quant_cache), torch.compile (test_generate_compile_*, test_generate_compilation_all_outputs),
flash attention (test_eager_matches_fa2_generate, test_flash_attention_2_continue_generate_with_position_ids),
several GPUs (test_model_parallel_beam_search), `logits_to_keep` (test_generate_methods_with_logits_to_keep),
continuing from embeddings (test_generate_continue_from_inputs_embeds), the cache's layout
(test_past_key_values_format), attention and hidden-state outputs of generate, custom 4-D attention masks
(test_custom_4d_attention_mask), and the strategies transformers 5 moved to the Hub (group and constrained beam
search, contrastive search, DoLa).
"""

import pytest
import torch
from torch import nn
from transformers import StoppingCriteria, StoppingCriteriaList

from modeling_gaze2report import Gaze2ReportForConditionalGeneration
from modeling_gaze2report.modeling_gaze2report import Gaze2ReportImageOutput

NEW_TOKENS = 6
GREEDY = {"max_new_tokens": NEW_TOKENS, "do_sample": False}
UNUSED_TOKEN_ID = 1023  # the last id of the tiny vocabulary, beyond the tokenizer's 813 tokens


@pytest.fixture
def model(tiny_model):
    """The tiny model with its language model's projections drawn at the 1/sqrt(fan_in) scale. At the default scale
    (std 0.02) the layers add next to nothing to the residual stream, so the tied head reads back the last token's own
    embedding and the model repeats one token whatever the image, and no test of decoding could fail on it. Here
    the reports differ between the images, between steps, and between greedy decoding and beam search."""
    with torch.no_grad():
        for module in tiny_model.model.language_model.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, module.in_features**-0.5)
    return tiny_model


@pytest.fixture
def prompt(tiny_processor, xray):
    """Two images (the radiograph and its upside-down copy) with the processor's prompt."""
    return tiny_processor(images=[xray, xray[::-1].copy()])


@pytest.fixture
def prompt_length(prompt):
    return prompt["input_ids"].shape[1]


def forward_logits(model, sequences, pixel_values):
    """(batch, sequence, vocab): the whole sequence through the forward pass at once, without a cache."""
    with torch.no_grad():
        return model(input_ids=sequences, pixel_values=pixel_values, use_cache=False).logits


def log_likelihood(model, sequences, pixel_values, prompt_length):
    """(batch,): the sum of the log-probabilities of the tokens after the prompt under the forward pass."""
    log_probabilities = forward_logits(model, sequences, pixel_values)[:, prompt_length - 1 : -1].log_softmax(-1)
    return log_probabilities.gather(-1, sequences[:, prompt_length:, None]).sum(dim=(1, 2))


def test_greedy_decoding_with_the_cache_takes_the_argmax_of_the_forward_pass_at_every_step(
    model, prompt, prompt_length
):
    output = model.generate(**prompt, **GREEDY, return_dict_in_generate=True, output_logits=True)
    generated = output.sequences
    assert generated.shape == (2, prompt_length + NEW_TOKENS)
    # the same positions, all at once and without a cache: the logits generation saw at each step, and their argmax
    logits = forward_logits(model, generated, prompt["pixel_values"])[:, prompt_length - 1 : -1]
    torch.testing.assert_close(torch.stack(output.logits, dim=1), logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(logits.argmax(-1), generated[:, prompt_length:])
    without_cache = model.generate(**prompt, **GREEDY, use_cache=False)
    assert torch.equal(without_cache, generated)


@pytest.mark.parametrize("cache_implementation", ["static", "dynamic"])
def test_each_cache_type_generates_the_same_tokens(model, prompt, cache_implementation):
    reference = model.generate(**prompt, **GREEDY, use_cache=False)
    assert torch.equal(model.generate(**prompt, **GREEDY, cache_implementation=cache_implementation), reference)


def test_generation_continues_from_its_returned_cache_without_the_image(model, prompt, prompt_length):
    whole = model.generate(**prompt, **GREEDY, eos_token_id=None)
    first = model.generate(**prompt, max_new_tokens=2, do_sample=False, eos_token_id=None, return_dict_in_generate=True)
    # the placeholders sit in the cached part: the image is not needed again
    rest = model.generate(
        input_ids=first.sequences,
        attention_mask=torch.ones_like(first.sequences),
        cache=first.cache,
        max_new_tokens=NEW_TOKENS - 2,
        do_sample=False,
        eos_token_id=None,
    )
    assert torch.equal(rest, whole)


def test_sampling_follows_the_seed_and_top_k_one_is_greedy(model, prompt):
    def sample(seed, **settings):
        torch.manual_seed(seed)
        return model.generate(**prompt, max_new_tokens=NEW_TOKENS, do_sample=True, **settings)

    assert torch.equal(sample(1, temperature=5.0), sample(1, temperature=5.0))
    assert not torch.equal(sample(1, temperature=5.0), sample(2, temperature=5.0))
    assert torch.equal(sample(3, top_k=1), model.generate(**prompt, **GREEDY))


def test_beam_search_scores_are_the_log_likelihoods_of_its_beams_best_first(model, prompt, prompt_length):
    settings = dict(GREEDY, num_beams=4, num_return_sequences=3, length_penalty=0.0, eos_token_id=None)
    output = model.generate(**prompt, **settings, return_dict_in_generate=True, output_scores=True)
    assert output.sequences.shape == (2 * 3, prompt_length + NEW_TOKENS)
    pixel_values = prompt["pixel_values"].repeat_interleave(3, dim=0)  # each image's beams side by side
    # length_penalty=0: a beam's score is the sum of its tokens' log-probabilities
    expected = log_likelihood(model, output.sequences, pixel_values, prompt_length)
    torch.testing.assert_close(output.sequences_scores, expected, atol=1e-4, rtol=1e-4)
    scores = output.sequences_scores.view(2, 3)  # (batch, num_return_sequences)
    assert (scores[:, :-1] >= scores[:, 1:]).all(), "beams come best first"
    greedy = model.generate(**prompt, **GREEDY, eos_token_id=None)
    greedy_likelihood = log_likelihood(model, greedy, prompt["pixel_values"], prompt_length)
    assert (scores[:, 0] >= greedy_likelihood - 1e-4).all(), "the best beam is at least as likely as the greedy path"
    again = model.generate(**prompt, **settings)
    assert torch.equal(again, output.sequences)


def test_beam_sampling_follows_the_seed_and_keeps_each_image_with_its_prompt(model, prompt, prompt_length):
    def beam_sample(seed):
        torch.manual_seed(seed)
        return model.generate(
            **prompt, max_new_tokens=NEW_TOKENS, do_sample=True, temperature=5.0, num_beams=2, num_return_sequences=2
        )

    first = beam_sample(1)
    assert first.shape == (4, prompt_length + NEW_TOKENS)
    assert torch.equal(first[:, :prompt_length], prompt["input_ids"].repeat_interleave(2, dim=0))
    assert torch.equal(beam_sample(1), first)
    assert not torch.equal(beam_sample(2), first)


def test_a_left_padded_prompt_generates_what_it_generates_alone(model, prompt):
    alone = model.generate(**prompt, **GREEDY)
    padding = torch.zeros((2, 3), dtype=prompt["input_ids"].dtype)
    padded_ids = torch.cat([padding, prompt["input_ids"]], dim=1)
    padded_ids[1, :3] = prompt["input_ids"][1, -3:]  # the second row is 3 tokens longer: a real, different prompt
    padded_mask = torch.cat([torch.tensor([[0, 0, 0], [1, 1, 1]]), prompt["attention_mask"]], dim=1)
    padded = model.generate(
        input_ids=padded_ids, attention_mask=padded_mask, pixel_values=prompt["pixel_values"], **GREEDY
    )
    assert torch.equal(padded[0, -NEW_TOKENS:], alone[0, -NEW_TOKENS:])


def test_num_return_sequences_of_beam_search_gives_each_image_its_own_reports_side_by_side(model, tiny_processor, xray):
    images = [xray, xray[::-1].copy()]
    settings = dict(GREEDY, num_beams=3, num_return_sequences=2)
    together = model.generate(**tiny_processor(images=images), **settings)  # (2 images x 2 reports, length)
    alone = torch.cat([model.generate(**tiny_processor(images=[image]), **settings) for image in images])
    assert together.shape[0] == 4
    assert torch.equal(together, alone)


def test_num_return_sequences_with_sampling_draws_different_reports_of_each_image(model, prompt, prompt_length):
    torch.manual_seed(0)
    generated = model.generate(
        **prompt, max_new_tokens=NEW_TOKENS, do_sample=True, temperature=5.0, num_return_sequences=3
    )
    assert generated.shape == (6, prompt_length + NEW_TOKENS)
    assert torch.equal(generated[:, :prompt_length], prompt["input_ids"].repeat_interleave(3, dim=0))
    assert len({tuple(row.tolist()) for row in generated[:3, prompt_length:]}) > 1, "three draws, not one repeated"
    # sampling from the most likely token alone: each copy is its own image's greedy report
    only_the_top = model.generate(**prompt, max_new_tokens=NEW_TOKENS, do_sample=True, top_k=1, num_return_sequences=3)
    assert torch.equal(only_the_top, model.generate(**prompt, **GREEDY).repeat_interleave(3, dim=0))


def test_eos_ends_the_row_that_generates_it_and_the_other_row_goes_on(model, prompt, prompt_length):
    greedy = model.generate(**prompt, **GREEDY, eos_token_id=None)[:, prompt_length:]  # (2, NEW_TOKENS)
    first, second = greedy.tolist()
    # the latest token that the first row generates for the first time there and the second row never generates
    stop_step = max(step for step, token in enumerate(first) if token not in first[:step] and token not in second)
    assert stop_step < NEW_TOKENS - 1, "the first row must have tokens left to drop after its eos"
    generated = model.generate(**prompt, **GREEDY, eos_token_id=first[stop_step], pad_token_id=UNUSED_TOKEN_ID)
    generated = generated[:, prompt_length:]
    assert generated[0].tolist() == first[: stop_step + 1] + [UNUSED_TOKEN_ID] * (NEW_TOKENS - stop_step - 1)
    assert generated[1].tolist() == second


@pytest.mark.parametrize("max_new_tokens", [1, 4])
def test_max_new_tokens_is_the_number_of_tokens_generated(model, prompt, prompt_length, max_new_tokens):
    longest = model.generate(**prompt, **GREEDY, eos_token_id=None)
    generated = model.generate(**prompt, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=None)
    assert torch.equal(generated, longest[:, : prompt_length + max_new_tokens])


def test_a_stopping_criterion_ends_the_rows_it_flags(model, prompt, prompt_length):
    class StopTheFirstRowAfterTwoTokens(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)  # (batch,)
            done[0] = input_ids.shape[1] >= prompt_length + 2
            return done

    greedy = model.generate(**prompt, **GREEDY, eos_token_id=None)
    assert UNUSED_TOKEN_ID not in greedy[:, prompt_length:]
    generated = model.generate(
        **prompt,
        **GREEDY,
        # an eos that never comes: generate pads the rows that stopped only when it knows an eos
        eos_token_id=UNUSED_TOKEN_ID,
        pad_token_id=UNUSED_TOKEN_ID,
        stopping_criteria=StoppingCriteriaList([StopTheFirstRowAfterTwoTokens()]),
    )
    assert torch.equal(generated[0, : prompt_length + 2], greedy[0, : prompt_length + 2])
    assert (generated[0, prompt_length + 2 :] == UNUSED_TOKEN_ID).all()
    assert torch.equal(generated[1], greedy[1])


@pytest.mark.parametrize("num_beams", [1, 2])
def test_a_prompt_given_as_embeddings_generates_what_its_token_ids_generate(model, prompt, prompt_length, num_beams):
    expected = model.generate(**prompt, **GREEDY, num_beams=num_beams)[:, prompt_length:]
    # the <gaze> placeholders are the placeholder token's embedding, where the model finds them
    inputs_embeds = model.get_input_embeddings()(prompt["input_ids"]).detach()
    generated = model.generate(
        inputs_embeds=inputs_embeds,
        attention_mask=prompt["attention_mask"],
        pixel_values=prompt["pixel_values"],
        **GREEDY,
        num_beams=num_beams,
    )
    assert torch.equal(generated, expected)  # from embeddings, generate returns only the new tokens


@pytest.mark.parametrize("num_beams", [1, 2])
def test_precomputed_image_features_generate_what_pixel_values_generate_without_encoding_again(
    model, prompt, num_beams
):
    expected = model.generate(**prompt, **GREEDY, num_beams=num_beams)
    with torch.no_grad():
        image_outputs = model.get_image_features(prompt["pixel_values"])
    encodings = []
    handle = model.model.vision_tower.register_forward_hook(lambda *args: encodings.append(1))
    try:
        generated = model.generate(
            input_ids=prompt["input_ids"],
            attention_mask=prompt["attention_mask"],
            # a fresh output: generate expands pooler_output in place for the beams
            mm_encoder_outputs={"image": Gaze2ReportImageOutput(pooler_output=image_outputs.pooler_output)},
            **GREEDY,
            num_beams=num_beams,
        )
    finally:
        handle.remove()
    assert encodings == []
    assert torch.equal(generated, expected)


def test_a_saved_model_generates_the_same_report_with_its_generation_config(model, prompt, tmp_path):
    model.generation_config.max_new_tokens = NEW_TOKENS
    model.generation_config.do_sample = False
    expected = model.generate(**prompt)
    model.save_pretrained(tmp_path)
    loaded = Gaze2ReportForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.generation_config.max_new_tokens == NEW_TOKENS
    assert torch.equal(loaded.generate(**prompt), expected)
