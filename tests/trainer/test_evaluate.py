import json
import math

import pytest
import torch

from trainer.core.config import EvalOptions
from trainer.core.evaluation import text_score, token_nll
from trainer.core.models import load_model
from trainer.eval_report import evaluate
from trainer.ngram import KneserNeyLM
from trainer.pretrain.data import split_text


@pytest.fixture(scope="module")
def loaded(gpt_run):
    return load_model(str(gpt_run.dir), device="cpu")


def brute_force_nll(loaded, ids, context_start):
    """Each token scored alone, from ids[context_start(t):t]: slow and obviously right."""
    total = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            window = torch.tensor([ids[context_start(t) : t]])
            total -= loaded.model(input_ids=window).logits[0, -1].log_softmax(-1)[ids[t]].item()
    return total


def test_windowed_scoring_of_long_text_matches_token_by_token_scoring(loaded):
    # three times the 32-token context (a BOS and 96 characters, one token each)
    text = ("the king follows the old road. a dog calls the sea. " * 2)[:96]
    ids = [loaded.tokenizer.bos_token_id] + loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1 + 3 * 32
    # with stride 1, every token sees the full context of 32 tokens before it
    full_context = brute_force_nll(loaded, ids, lambda t: max(0, t - 32))
    assert token_nll(loaded, ids, stride=1) == pytest.approx(full_context, rel=1e-5)
    # by default windows do not overlap: a token sees the tokens since its window of 32 began
    windows = brute_force_nll(loaded, ids, lambda t: (t - 1) // 32 * 32)
    assert token_nll(loaded, ids) == pytest.approx(windows, rel=1e-5)
    assert windows != pytest.approx(full_context, rel=1e-3)


def test_bits_per_character_is_total_bits_over_characters(loaded):
    text = "our queen loves her crown.\n"
    score = text_score(loaded, text)
    assert score.tokens == len(text) == score.chars  # characters: one token each, all scored after a BOS
    assert score.bits_per_char == pytest.approx(score.nats / math.log(2) / len(text))
    assert score.perplexity == pytest.approx(math.exp(score.nats / score.tokens))


def test_the_model_and_the_ngram_are_scored_on_the_same_held_out_text(loaded, gpt_run, tmp_path):
    report = evaluate(loaded, gpt_run.data, EvalOptions(split="test", ngram_order=3))
    model_row, ngram_row = report.rows
    # the model recorded its split, so the test split is text it never trained on
    parts = split_text(gpt_run.data.read_text(), (0.9, 0.05, 0.05))
    assert model_row.score.chars == ngram_row.score.chars == len(parts.test)
    expected = KneserNeyLM(3).fit(parts.train).nll(parts.test)
    assert ngram_row.score.nats == pytest.approx(expected)
    # both are far better than a uniform guess over the characters
    uniform_bits = math.log2(len(set(gpt_run.data.read_text())))
    assert model_row.score.bits_per_char < uniform_bits and ngram_row.score.bits_per_char < uniform_bits
    as_json = json.loads(json.dumps(report.as_dict()))
    assert [r["name"] for r in as_json["rows"]] == [gpt_run.dir.name, "3-gram KN (chars)"]


def test_chat_data_gets_bleu_and_chrf_for_model_and_ngram(tiny_model_dir, tmp_path):
    chats = tmp_path / "chats.jsonl"
    with chats.open("w") as f:
        for i in range(30):
            animal = ["cat", "dog", "bird"][i % 3]
            messages = [
                {"role": "user", "content": f"what does the {animal} say?"},
                {"role": "assistant", "content": f"the {animal} says hello number {i % 5}."},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")
    report = evaluate(load_model(str(tiny_model_dir), device="cpu"), chats, EvalOptions(max_new_tokens=16))
    model_row, ngram_row = report.rows
    held_out = [json.loads(line)["messages"][1]["content"] for line in chats.read_text().splitlines()[27:]]
    assert model_row.score.chars == ngram_row.score.chars == sum(map(len, held_out))
    for row in report.rows:
        assert 0 <= row.bleu <= 100 and 0 <= row.chrf <= 100
    # the n-gram has seen these replies' pattern in the training part; the random model has not
    assert ngram_row.chrf > model_row.chrf
    assert ngram_row.score.bits_per_char < model_row.score.bits_per_char
    assert report.samples[0]["reference"].startswith("the ")
