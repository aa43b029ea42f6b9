"""The GPT written from its parts is GPT-2: the same weights give transformers' GPT2LMHeadModel's logits,
and a pretraining run's directory is a GPT-2 model that transformers and peft load."""

from typing import TypeVar

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from tests.trainer.conftest import TINY
from trainer.core.config import PretrainConfig
from trainer.core.evaluation import mean_loss
from trainer.core.objectives import NextToken
from trainer.core.text import load_clean_text
from trainer.errors import CheckpointError
from trainer.pretrain.data import BatchSampler, encode, split_text
from trainer.pretrain.model import GPT, GPTShape
from trainer.pretrain.tokenizer import train_tokenizer

SHAPE = GPTShape(n_layer=3, n_head=4, n_embd=48, block_size=24)


def logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


M = TypeVar("M", bound=torch.nn.Module)


def scrambled(model: M) -> M:
    """Every weight random, biases and layer norms included: a wrong mapping of any of them shows."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer("char", "to be, or not to be: that is the question.\n")


def test_transformers_gpt2_weights_give_the_same_logits_in_our_gpt():
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=24, n_embd=48, n_layer=3, n_head=4, bos_token_id=0, eos_token_id=0)
    hf = scrambled(GPT2LMHeadModel(config))
    ids = torch.randint(40, (3, 24))
    ours = GPT.from_hf(hf)
    assert ours.shape == GPTShape(3, 4, 48, 24, dropout=0.1) and ours.vocab_size == 40  # GPT-2's default dropout
    torch.testing.assert_close(logits(ours, ids), logits(hf, ids), rtol=1e-4, atol=1e-4)
    # and shorter inputs than the context, which a causal mask must not disturb
    torch.testing.assert_close(logits(ours, ids[:, :5]), logits(hf, ids[:, :5]), rtol=1e-4, atol=1e-4)
    # and only some positions' logits, as transformers' logits_to_keep asks for them (0: every position; a
    # boolean mask: its positions)
    with torch.no_grad():
        for keep in (0, 1, 7, torch.rand(3, 24) < 0.3):
            kept = ours(input_ids=ids, logits_to_keep=keep).logits
            torch.testing.assert_close(kept, hf(input_ids=ids, logits_to_keep=keep).logits, rtol=1e-4, atol=1e-4)


def test_our_weights_give_the_same_logits_in_transformers_gpt2(tokenizer):
    torch.manual_seed(1)
    ours = scrambled(GPT(SHAPE, len(tokenizer)))
    ids = torch.randint(len(tokenizer), (4, SHAPE.block_size))
    hf = ours.to_hf(tokenizer)
    assert isinstance(hf, GPT2LMHeadModel) and hf.lm_head.weight is hf.transformer.wte.weight
    torch.testing.assert_close(logits(hf, ids), logits(ours, ids), rtol=1e-4, atol=1e-4)


def test_a_saved_gpt_loads_in_transformers_with_the_same_logits(tmp_path, tokenizer):
    torch.manual_seed(2)
    ours = scrambled(GPT(SHAPE, len(tokenizer)))
    ours.save_hf(tmp_path, tokenizer)
    hf = GPT2LMHeadModel.from_pretrained(tmp_path)
    ids = torch.randint(len(tokenizer), (2, SHAPE.block_size))
    torch.testing.assert_close(logits(hf, ids), logits(ours, ids), rtol=1e-4, atol=1e-4)
    assert hf.config.eos_token_id == tokenizer.eos_token_id


def test_a_pretraining_run_is_a_gpt2_directory_that_scores_the_runs_best_validation_loss(gpt_run):
    # the loop measured our GPT; transformers' GPT-2, loading the exported directory, measures the same
    exported = AutoModelForCausalLM.from_pretrained(gpt_run.dir)
    assert isinstance(exported, GPT2LMHeadModel)
    cfg = PretrainConfig(data=str(gpt_run.data), out_dir=str(gpt_run.dir), **TINY)
    val_ids = encode(split_text(load_clean_text(cfg.data), cfg.split).val, AutoTokenizer.from_pretrained(gpt_run.dir))
    batches = BatchSampler(val_ids, cfg.block_size, cfg.batch_size, cfg.seed + 1).first(cfg.eval_batches)
    loss = mean_loss(exported, batches, NextToken(), torch.device("cpu"))
    assert loss == pytest.approx(gpt_run.result.best_val_loss, abs=1e-4)


def test_peft_puts_an_adapter_on_a_pretraining_run(gpt_run):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(gpt_run.dir), LoraConfig(r=2, fan_in_fan_out=True, task_type="CAUSAL_LM")
    )
    assert model.get_nb_trainable_parameters()[0] > 0
    ids = torch.tensor([[1, 2, 3]])
    assert logits(model, ids).shape[:2] == (1, 3)


def test_a_gpt2_variant_this_gpt_cannot_express_is_refused():
    config = GPT2Config(vocab_size=40, n_positions=8, n_embd=16, n_layer=1, n_head=2, activation_function="relu")
    with pytest.raises(CheckpointError, match="variant"):
        GPT.from_hf(GPT2LMHeadModel(config))


def test_padding_and_overlong_inputs_are_refused_not_silently_misread(tokenizer):
    model = GPT(SHAPE, len(tokenizer))
    with pytest.raises(ValueError, match="attention mask"):
        model(torch.zeros(1, 4, dtype=torch.long), attention_mask=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, SHAPE.block_size + 1, dtype=torch.long))
