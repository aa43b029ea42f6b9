"""A model made by `trainer pretrain` is served by the brain as it is: its loader and its engine."""

from brain.engine.batching import Engine, GenerationRequest
from brain.engine.model_loading import load_serving_model
from trainer.core.config import SamplingOptions
from trainer.core.models import load_model
from trainer.sampling import generate


async def test_the_saved_model_loads_in_the_brains_engine_and_generates(gpt_run, tmp_path):
    served = load_serving_model(str(gpt_run.dir), cache_dir=tmp_path / "cache", device="cpu")
    tokenizer = served.tokenizer
    assert served.context_length == 32
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in served.eos_token_ids
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]

    engine = Engine(served.model, max_batch_size=2, eos_token_ids=served.eos_token_ids, device=served.device)
    engine.start()
    try:
        handle = engine.submit(GenerationRequest(prompt_ids=prompt_ids, max_new_tokens=8))  # temperature 0: greedy
        new_ids = await handle.token_ids()
    finally:
        engine.stop()

    assert len(new_ids) == 8
    # the engine's greedy reply is the one transformers' own generate gives
    expected = generate(
        load_model(str(gpt_run.dir), device="cpu"),
        "hi",
        SamplingOptions(strategy="greedy", max_new_tokens=8),
        chat=True,
    )
    assert tokenizer.decode(new_ids, skip_special_tokens=True) == expected[0]
