"""The argument checks that the processor, the inference path, the records, the app and the demo share: each refuses a
bad value with a ValueError that names it."""

POSITIVE_INTEGER_GENERATE_KWARGS = ("max_new_tokens", "num_beams", "num_return_sequences", "min_new_tokens")


def is_positive_integer(value) -> bool:
    """Whether `value` is an int >= 1 (True and False are no integers here)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_integer(name: str, value) -> None:
    """Refuses a `value` of setting `name` that is no int >= 1, naming both."""
    if not is_positive_integer(value):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_generate_kwargs(generate_kwargs: dict) -> None:
    """Refuses the generation settings that must be integers >= 1 (max_new_tokens, num_beams, num_return_sequences,
    min_new_tokens) but are not, naming the setting and the value."""
    for name in POSITIVE_INTEGER_GENERATE_KWARGS:
        if name in generate_kwargs:
            check_positive_integer(name, generate_kwargs[name])


def check_context_length(config, prompt_length: int, max_new_tokens: int) -> None:
    """The one rule that bounds generation: the prompt and `max_new_tokens` must fit the language model's
    `max_position_embeddings` (when its config has one); otherwise a ValueError says how many new tokens fit."""
    context = getattr(config.text_config, "max_position_embeddings", None)
    if context is not None and prompt_length + max_new_tokens > context:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} with a {prompt_length}-token prompt exceeds the language "
            f"model's context of {context} positions (max_position_embeddings); at most "
            f"{max(0, context - prompt_length)} new tokens fit"
        )


__all__ = ["check_context_length", "check_generate_kwargs", "check_positive_integer", "is_positive_integer"]
