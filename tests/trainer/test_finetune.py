import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.trainer.conftest import toy_corpus
from trainer.core.config import FinetuneConfig, SamplingOptions
from trainer.core.examples import IGNORE_INDEX, ChatRenderer
from trainer.core.models import load_model
from trainer.finetune import finetune
from trainer.sampling import generate


@pytest.fixture
def chats(tmp_path):
    path = tmp_path / "chats.jsonl"
    with path.open("w") as f:
        for i in range(40):
            animal = ["cat", "dog", "bird", "horse"][i % 4]
            messages = [
                {"role": "user", "content": f"what does the {animal} say?"},
                {"role": "assistant", "content": f"the {animal} says hello."},
                {"role": "user", "content": "and then?"},
                {"role": "assistant", "content": "then it sleeps."},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")
    return path


def test_only_the_assistant_replies_are_targets(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello!"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "see you."},
    ]
    [example] = ChatRenderer(tokenizer, max_tokens=512).examples(messages)
    targets = [t for t, label in zip(example.ids, example.labels, strict=True) if label != IGNORE_INDEX]
    assert tokenizer.decode(targets) == "hello!<|im_end|>see you.<|im_end|>"
    # a window too short for any reply leaves nothing to learn from
    assert ChatRenderer(tokenizer, max_tokens=10).examples(messages) == []


def test_lora_fine_tuning_on_chats_lowers_the_held_out_loss_and_saves_an_adapter(tiny_model_dir, chats, tmp_path):
    out = tmp_path / "adapter"
    result = finetune(
        FinetuneConfig(
            model=str(tiny_model_dir),
            data=str(chats),
            out_dir=str(out),
            method="lora",
            target_modules=["all-linear"],
            r=8,
            learning_rate=1e-2,
            epochs=3,
            batch_size=4,
        ),
        progress=False,
    )
    assert (result.train_examples, result.val_examples) == (36, 4)
    assert result.best_val_loss < result.base_val_loss - 0.5
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()  # an adapter, not a copy of the model
    record = json.loads((out / "finetune.json").read_text())
    assert record["val_loss_after"] == result.best_val_loss
    # anyone's peft loads it onto the base model named in its config, and it answers
    adapted = load_model(str(out), device="cpu")
    reply = generate(
        adapted, "what does the dog say?", SamplingOptions(strategy="greedy", max_new_tokens=16), chat=True
    )
    assert reply[0].startswith("the dog says")


def test_full_fine_tuning_on_plain_text_lowers_the_held_out_loss(gpt_run, tmp_path):
    text = tmp_path / "more.txt"
    # new text in the same alphabet: each sentence written backwards
    text.write_text("".join(line[::-1] + "\n" for line in toy_corpus(lines=300, seed=1).splitlines()))
    out = tmp_path / "full"
    result = finetune(
        FinetuneConfig(
            model=str(gpt_run.dir),
            data=str(text),
            out_dir=str(out),
            method="full",
            learning_rate=3e-3,
            max_seq_tokens=32,
            max_steps=30,
            batch_size=8,
        ),
        progress=False,
    )
    assert result.steps == 30
    assert result.best_val_loss < result.base_val_loss - 0.3
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.n_positions == 32
    assert AutoTokenizer.from_pretrained(out).chat_template
