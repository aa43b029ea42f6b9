import pytest

from trainer.core.config import SamplingOptions
from trainer.core.models import load_model
from trainer.errors import ConfigError
from trainer.sampling import generate, prompt_ids

PROMPTS = ["the cat ", "a dog likes ", "our queen"]


@pytest.fixture(scope="module")
def loaded(gpt_run):
    return load_model(str(gpt_run.dir), device="cpu")


def test_beam_search_with_one_beam_is_greedy(loaded):
    for prompt in PROMPTS:
        greedy = generate(loaded, prompt, SamplingOptions(strategy="greedy", max_new_tokens=12))
        beam = generate(loaded, prompt, SamplingOptions(strategy="beam", num_beams=1, max_new_tokens=12))
        assert beam == greedy
        assert len(greedy[0]) == 12  # characters: one per token


def test_sampling_with_a_fixed_seed_is_reproducible(loaded):
    options = SamplingOptions(strategy="sample", temperature=1.5, max_new_tokens=30, seed=7)
    first = generate(loaded, "the ", options)
    assert generate(loaded, "the ", options) == first
    others = {
        generate(loaded, "the ", SamplingOptions(strategy="sample", temperature=1.5, max_new_tokens=30, seed=seed))[0]
        for seed in (8, 9, 10)
    }
    assert others - {first[0]}  # other seeds give other text


def test_top_k_of_one_leaves_only_the_greedy_choice(loaded):
    greedy = generate(loaded, "my friend ", SamplingOptions(strategy="greedy", max_new_tokens=15))
    for seed in (1, 2):
        top1 = generate(
            loaded,
            "my friend ",
            SamplingOptions(strategy="sample", top_k=1, max_new_tokens=15, temperature=2.0, seed=seed),
        )
        assert top1 == greedy


def test_beam_search_returns_the_asked_number_of_continuations(loaded):
    texts = generate(
        loaded, "the king ", SamplingOptions(strategy="beam", num_beams=4, num_return_sequences=3, max_new_tokens=10)
    )
    assert len(texts) == 3 and len(set(texts)) == 3


def test_a_prompt_longer_than_the_context_keeps_its_end(loaded):
    long_prompt = "the cat sees the moon. " * 20  # far beyond the 32-token context
    out = generate(loaded, long_prompt, SamplingOptions(strategy="greedy", max_new_tokens=10))
    same_end = generate(loaded, "x" + long_prompt, SamplingOptions(strategy="greedy", max_new_tokens=10))
    assert len(out[0]) == 10 and out == same_end


def test_text_longer_than_the_context_is_written_in_rounds(loaded):
    greedy = generate(loaded, "the ", SamplingOptions(strategy="greedy", max_new_tokens=100))
    assert len(greedy[0]) == 100  # the context holds 32 tokens, one character each
    options = SamplingOptions(strategy="sample", max_new_tokens=100, seed=3, num_return_sequences=2)
    texts = generate(loaded, "the ", options)
    assert len(texts) == 2 and all(len(t) > 90 for t in texts)
    assert generate(loaded, "the ", options) == texts
    with pytest.raises(ConfigError, match="beam search needs prompt and reply inside the model's context of 32"):
        generate(loaded, "the", SamplingOptions(strategy="beam", max_new_tokens=40))


def test_chat_prompts_go_through_the_chat_template(tiny_model_dir):
    model = load_model(str(tiny_model_dir), device="cpu")
    ids = prompt_ids(model, "hello", chat=True)
    assert model.tokenizer.decode(ids) == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    reply = generate(model, "hello", SamplingOptions(strategy="greedy", max_new_tokens=5), chat=True)
    assert reply[0] and "<|im_start|>" not in reply[0]
