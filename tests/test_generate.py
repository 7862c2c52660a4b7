"""Generation behaviours transformers' generation tests would check (the transformers sdist has no tests/generation/):
greedy decoding, sampling, beams, left padding, cache types, num_return_sequences, and save/load."""

import pytest
import torch

from modeling_gaze2report import Gaze2ReportForConditionalGeneration

NEW_TOKENS = 6


@pytest.fixture
def prompt(tiny_processor, xray):
    return tiny_processor(images=[xray, xray[::-1].copy()])


def new_tokens(generated: torch.Tensor, prompt_length: int) -> torch.Tensor:
    return generated[:, prompt_length:]


def test_greedy_decoding_picks_the_most_likely_token_at_every_step(tiny_model, prompt):
    generated = tiny_model.generate(**prompt, max_new_tokens=NEW_TOKENS, do_sample=False)
    ids, attention_mask = prompt["input_ids"], prompt["attention_mask"]
    with torch.no_grad():
        for _ in range(NEW_TOKENS):  # the slow way: the whole sequence again at every step, no cache
            logits = tiny_model(
                input_ids=ids, attention_mask=attention_mask, pixel_values=prompt["pixel_values"], use_cache=False
            ).logits
            next_ids = logits[:, -1].argmax(dim=-1, keepdim=True)  # (batch, 1)
            ids = torch.cat([ids, next_ids], dim=1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(next_ids)], dim=1)
    torch.testing.assert_close(generated, ids)


def test_sampling_follows_the_seed_and_top_k_one_is_greedy(tiny_model, prompt):
    def sample(seed, **settings):
        torch.manual_seed(seed)
        return tiny_model.generate(**prompt, max_new_tokens=NEW_TOKENS, do_sample=True, **settings)

    torch.testing.assert_close(sample(1), sample(1))
    assert not torch.equal(sample(1, temperature=5.0), sample(2, temperature=5.0))
    greedy = tiny_model.generate(**prompt, max_new_tokens=NEW_TOKENS, do_sample=False)
    torch.testing.assert_close(sample(3, top_k=1), greedy)


def test_beam_search_returns_the_best_beams_in_order(tiny_model, prompt):
    output = tiny_model.generate(
        **prompt,
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
        num_beams=4,
        num_return_sequences=3,
        return_dict_in_generate=True,
        output_scores=True,
        length_penalty=0.0,
        eos_token_id=None,
    )
    assert output.sequences.shape == (2 * 3, prompt["input_ids"].shape[1] + NEW_TOKENS)
    scores = output.sequences_scores.view(2, 3)  # (batch, num_return_sequences)
    assert (scores[:, :-1] >= scores[:, 1:]).all(), "beams come best first"
    greedy = tiny_model.generate(**prompt, max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None)
    with torch.no_grad():  # the best beam is at least as likely as the greedy path

        def log_likelihood(sequences, pixel_values):
            logits = tiny_model(input_ids=sequences, pixel_values=pixel_values).logits[:, -NEW_TOKENS - 1 : -1]
            return logits.log_softmax(-1).gather(-1, sequences[:, -NEW_TOKENS:, None]).sum(dim=(1, 2))

        best = output.sequences.view(2, 3, -1)[:, 0]
        assert (
            log_likelihood(best, prompt["pixel_values"]) >= log_likelihood(greedy, prompt["pixel_values"]) - 1e-4
        ).all()


def test_a_left_padded_prompt_generates_what_it_generates_alone(tiny_model, prompt):
    alone = tiny_model.generate(**prompt, max_new_tokens=NEW_TOKENS, do_sample=False)
    pad_id = 0
    padding = torch.full((2, 3), pad_id)
    padded_ids = torch.cat([padding, prompt["input_ids"]], dim=1)
    padded_mask = torch.cat([torch.tensor([[0, 0, 0], [1, 1, 1]]), prompt["attention_mask"]], dim=1)
    padded_ids[1, :3] = prompt["input_ids"][1, -3:]  # the second row is 3 tokens longer: a real, different prompt
    padded = tiny_model.generate(
        input_ids=padded_ids,
        attention_mask=padded_mask,
        pixel_values=prompt["pixel_values"],
        max_new_tokens=NEW_TOKENS,
        do_sample=False,
    )
    torch.testing.assert_close(padded[0, -NEW_TOKENS:], alone[0, -NEW_TOKENS:])


@pytest.mark.parametrize(
    "cache_settings", [{"use_cache": False}, {"cache_implementation": "static"}, {"cache_implementation": "dynamic"}]
)
def test_every_cache_type_generates_the_same_tokens(tiny_model, prompt, cache_settings):
    reference = tiny_model.generate(**prompt, max_new_tokens=NEW_TOKENS, do_sample=False)
    other = tiny_model.generate(**prompt, max_new_tokens=NEW_TOKENS, do_sample=False, **cache_settings)
    torch.testing.assert_close(other, reference)


def test_num_return_sequences_repeats_each_image_with_sampling(tiny_model, prompt):
    torch.manual_seed(0)
    generated = tiny_model.generate(
        **prompt, max_new_tokens=NEW_TOKENS, do_sample=True, temperature=5.0, num_return_sequences=3
    )
    assert generated.shape == (6, prompt["input_ids"].shape[1] + NEW_TOKENS)
    torch.testing.assert_close(generated[:3, : prompt["input_ids"].shape[1]], prompt["input_ids"][:1].expand(3, -1))
    assert len({tuple(row.tolist()) for row in generated[:3, -NEW_TOKENS:]}) > 1, "three draws, not one repeated"


def test_a_saved_model_generates_the_same_report_with_its_generation_config(tiny_model, prompt, tmp_path):
    tiny_model.generation_config.max_new_tokens = NEW_TOKENS
    tiny_model.generation_config.do_sample = False
    expected = tiny_model.generate(**prompt)
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "generation_config.json").is_file()
    loaded = Gaze2ReportForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.generation_config.max_new_tokens == NEW_TOKENS
    torch.testing.assert_close(loaded.generate(**prompt), expected)
