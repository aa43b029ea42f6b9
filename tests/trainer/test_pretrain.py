import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.trainer.conftest import TINY
from trainer.core.config import PretrainConfig
from trainer.pretrain.tokenizer import train_tokenizer
from trainer.pretrain.train import pretrain


def test_a_tiny_pretrain_run_lowers_the_validation_loss(gpt_run):
    val = gpt_run.result.history["val"]
    assert val[0][0] == 0 and val[-1][0] == TINY["max_steps"]
    # from about ln(vocabulary) for random weights to well below it
    assert val[0][1] > 3.0
    assert gpt_run.result.best_val_loss < val[0][1] - 1.0


def test_the_run_directory_is_a_hugging_face_model_with_a_chat_template(gpt_run):
    out = gpt_run.dir
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "history.json"):
        assert (out / name).is_file(), name
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.n_layer == TINY["n_layer"] and model.config.n_positions == TINY["block_size"]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids[0]) == "<|im_start|>"  # one token, not twelve characters
    assert tokenizer.eos_token == "<|im_end|>"
    # the exported weights are the best checkpoint's
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["step"] == gpt_run.result.best_step


def test_checkpoints_describe_themselves(gpt_run):
    meta = json.loads((gpt_run.dir / "checkpoints" / "last" / "checkpoint.json").read_text())
    assert meta["step"] == TINY["max_steps"]
    assert meta["train_config"]["n_embd"] == TINY["n_embd"]
    assert meta["tokenizer"]["kind"] == "char"
    assert meta["tokenizer"]["vocab_size"] == len(AutoTokenizer.from_pretrained(gpt_run.dir))
    assert meta["data"]["characters"] == len(gpt_run.data.read_text())
    assert len(meta["history"]["train"]) == TINY["max_steps"]


RESUME = dict(TINY, max_steps=6, eval_every=3, dropout=0.1, grad_accum=2)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, corpus_file):
    out = tmp_path_factory.mktemp("whole")
    return pretrain(PretrainConfig(data=str(corpus_file), out_dir=str(out), **RESUME), progress=False)


def cut_run(out, corpus_file):
    cfg = PretrainConfig(data=str(corpus_file), out_dir=str(out), **RESUME)
    cut = pretrain(cfg, stop_after=3, progress=False)
    assert cut.steps == 3 and len(cut.history["train"]) == 3
    return cfg


def test_resuming_gives_the_same_next_step_loss_as_the_uninterrupted_run(tmp_path, corpus_file, uninterrupted):
    # dropout and gradient accumulation are on, so the RNG and the data position must both be restored
    cfg = cut_run(tmp_path / "run", corpus_file)
    resumed = pretrain(cfg, resume=tmp_path / "run", progress=False)
    assert resumed.steps == 6
    assert resumed.history["train"][3] == uninterrupted.history["train"][3]  # step 4, the first after resuming
    assert resumed.history["train"] == uninterrupted.history["train"]
    assert resumed.history["val"] == uninterrupted.history["val"]


@pytest.mark.parametrize("part, first_changed_step", [("data_position", 4), ("rng", 4), ("optimizer", 5)])
def test_each_part_of_the_saved_state_is_needed_for_an_exact_resume(
    tmp_path, corpus_file, uninterrupted, part, first_changed_step
):
    cfg = cut_run(tmp_path / "run", corpus_file)
    state_file = tmp_path / "run" / "checkpoints" / "last" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=True)
    if part == "data_position":
        state["data_position"] = 0
    elif part == "rng":
        state["rng"][0]["torch"] = torch.Generator().manual_seed(12345).get_state()
    else:
        state["optimizer"]["state"] = {}
    torch.save(state, state_file)
    resumed = pretrain(cfg, resume=tmp_path / "run", progress=False)
    i = first_changed_step - 1
    assert resumed.history["train"][:i] == uninterrupted.history["train"][:i]
    assert resumed.history["train"][i] != uninterrupted.history["train"][i]


def test_byte_level_bpe_spells_any_text_and_characters_mark_the_unknown():
    text = "to be, or not to be: that is the question.\n" * 50
    bpe = train_tokenizer("bpe", text, vocab_size=300)
    assert 256 + 3 < len(bpe) <= 300  # bytes, specials, and merges until the text offers no more
    odd = "naïve café 😀 <|im_end|>"
    assert bpe.decode(bpe(odd, add_special_tokens=False)["input_ids"]) == odd
    assert len(bpe("to be, or not to be", add_special_tokens=False)["input_ids"]) < len("to be, or not to be")
    chars = train_tokenizer("char", text)
    assert chars.decode(chars("to be.", add_special_tokens=False)["input_ids"]) == "to be."
    assert chars.decode(chars("zebra?", add_special_tokens=False)["input_ids"]) == "<|unk|>ebra<|unk|>"


def test_a_bpe_run_trains_and_saves_its_tokenizer(tmp_path, corpus_file):
    cfg = PretrainConfig(
        data=str(corpus_file),
        out_dir=str(tmp_path / "bpe"),
        tokenizer="bpe",
        vocab_size=320,
        **dict(TINY, max_steps=4, eval_every=2),
    )
    result = pretrain(cfg, progress=False)
    assert len(AutoTokenizer.from_pretrained(result.out_dir)) == 320
    assert result.history["val"][-1][1] < result.history["val"][0][1]


@pytest.mark.parametrize("bad", [dict(n_embd=30, n_head=4), dict(dropout=1.0), dict(split="0.5,0.2")])
def test_impossible_settings_are_refused(tmp_path, corpus_file, bad):
    from trainer.errors import ConfigError

    with pytest.raises(ConfigError):
        pretrain(PretrainConfig(data=str(corpus_file), out_dir=str(tmp_path), **{**TINY, **bad}), progress=False)
