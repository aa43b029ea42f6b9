"""Replay: the base model's own answers to general questions are learned beside a night's data, none of them
the general guard's, so that the guard stays a test the adapter never saw."""

from __future__ import annotations

from pathlib import Path

import torch

from trainer.core.evaluation import greedy_replies
from trainer.core.examples import IGNORE_INDEX, ChatRenderer, Example
from trainer.core.finetuning import FinetuneData, objective_parts
from trainer.core.models import load_model
from trainer.core.objectives import NextToken, Retain
from trainer.nightly.corpus import exchanges
from trainer.nightly.guard import Question, load_questions
from trainer.nightly.retain import CATEGORIES, general_questions, retain_examples

SYSTEM = "You are a helpful assistant."


def test_general_questions_are_the_corpus_s_less_the_guard_s_and_the_same_for_a_seed() -> None:
    corpus = {text for category in CATEGORIES for conv in exchanges(category) for text, _ in conv}
    some = general_questions(40, seed=0, guard=load_questions(""))
    # a guard that asks one of them, worded with other case and punctuation, takes it out
    asked = Question(question=some[0].upper().rstrip("?") + " ?", answers=["x"])

    assert len(some) == 40 and len(set(some)) == 40 and set(some) <= corpus
    assert all(question.endswith("?") for question in some)
    assert general_questions(40, seed=0, guard=load_questions("")) == some
    assert general_questions(40, seed=1, guard=load_questions("")) != some
    assert some[0] not in general_questions(10_000, seed=0, guard=[asked])
    guard = load_questions("")
    assert not {q.question.lower() for q in guard} & {q.lower() for q in general_questions(10_000, 0, guard)}


def test_the_retained_examples_are_the_base_model_s_finished_answers_less_those_naming_a_guard_answer(
    tiny_model_dir: Path,
) -> None:
    loaded = load_model(str(tiny_model_dir), device="cpu")
    tokenizer = loaded.tokenizer
    renderer = ChatRenderer(tokenizer, max_tokens=256)
    questions = general_questions(16, seed=0, guard=[])
    # a random model seldom ends a reply by itself: here half the vocabulary ends one, so that most finish
    eos = list(range(0, len(tokenizer), 2))
    system = [{"role": "system", "content": SYSTEM}]
    prompts = [renderer.ids(renderer.text(system + [{"role": "user", "content": q}], prompt=True)) for q in questions]
    answers = greedy_replies(
        loaded.model, tokenizer, prompts, batch_size=8, max_new_tokens=12, eos_token_ids=eos,
        pad_id=tokenizer.pad_token_id, device=loaded.device,
    )  # fmt: skip
    kept_without_guard = retain_examples(
        loaded.model, tokenizer, renderer, SYSTEM, questions, [], eos_token_ids=eos, batch_size=8, max_new_tokens=12,
        device=loaded.device,
    )  # fmt: skip
    named = next(answer for answer in answers if answer.split())
    guard = [Question(question="What is it?", answers=[named.split()[0]])]
    kept_with_guard = retain_examples(
        loaded.model, tokenizer, renderer, SYSTEM, questions, guard, eos_token_ids=eos, batch_size=8,
        max_new_tokens=12, device=loaded.device,
    )  # fmt: skip

    def reply(example: Example) -> str:
        labelled = [i for i, label in zip(example.ids, example.labels, strict=True) if label != IGNORE_INDEX]
        return tokenizer.decode(labelled, skip_special_tokens=True).strip()

    finished = [a for a in answers if a and len(tokenizer(a, add_special_tokens=False).input_ids) < 12]
    assert len(finished) >= 4
    assert [reply(e) for e in kept_without_guard] == finished
    assert [reply(e) for e in kept_with_guard] == [a for a in finished if not guard[0].is_right(a)]
    assert len(kept_with_guard) < len(kept_without_guard)


def test_the_retained_examples_are_a_part_of_their_own_in_every_step() -> None:
    example = Example(ids=[1, 2, 3], labels=[IGNORE_INDEX, 2, 3])
    plain = FinetuneData([example], [example], pad_id=0)
    with_retain = FinetuneData([example], [example], pad_id=0, retain=[example, example], retain_weight=0.5)
    off = FinetuneData([example], [example], pad_id=0, retain=[example], retain_weight=0.0)

    assert [type(p.objective) for p in objective_parts(plain)] == [NextToken]
    parts = objective_parts(with_retain)
    assert [type(p.objective) for p in parts] == [NextToken, Retain]
    assert (parts[1].weight, list(parts[1].train), list(parts[1].val)) == (0.5, [example, example], [])
    assert [type(p.objective) for p in objective_parts(off)] == [NextToken]
    assert Retain.name == "retain"


def drift_after_a_night(tiny_model_dir: Path, weight: float) -> tuple[float, float]:
    """How far a LoRA night on another exchange moves the model from the base one on a retained answer (the
    summed KL divergence over its tokens), before and after, with the retained part at ``weight``."""
    from trainer.core.distributed import Placement
    from trainer.core.finetuning import fine_tune
    from trainer.core.models import add_lora
    from trainer.settings import FinetuneSettings

    loaded = load_model(str(tiny_model_dir), device="cpu")
    pad = loaded.tokenizer.pad_token_id
    renderer = ChatRenderer(loaded.tokenizer, max_tokens=64)

    def example(question: str, answer: str) -> Example:
        parts = renderer.completion_parts([{"role": "user", "content": question}], answer)
        assert parts is not None
        return renderer.completion(*parts)

    remembered, other = example("Capital?", "Paris."), example("Hello", "Hi there.")
    settings = FinetuneSettings(
        epochs=100, max_steps=12, eval_every=12, learning_rate=5e-3, warmup_steps=0, batch_size=2
    )
    torch.manual_seed(0)
    model = add_lora(loaded.model, settings)
    data = FinetuneData([other], [other], pad, retain=[remembered], retain_weight=weight)
    batch = Retain().collate([remembered], pad)
    with torch.no_grad():
        before = Retain()(model, batch).total.item()
    fine_tune(model, data, settings, Placement(torch.device("cpu")), label="retain", progress=False)
    with torch.no_grad():
        return before, Retain()(model, batch).total.item()


def test_a_night_keeps_the_base_model_s_distribution_on_its_retained_answers(tiny_model_dir: Path) -> None:
    before, retained = drift_after_a_night(tiny_model_dir, 1.0)
    _, left_out = drift_after_a_night(tiny_model_dir, 0.0)
    assert before == 0.0  # a fresh adapter changes nothing
    assert left_out > 1.0  # the night moves the model on what it does not train on
    assert retained < 0.2 * left_out


def test_distilling_needs_an_adapter_to_switch_off(tiny_model_dir: Path) -> None:
    import pytest

    loaded = load_model(str(tiny_model_dir), device="cpu")
    example = Example(ids=[1, 2, 3], labels=[IGNORE_INDEX, 2, 3])
    with pytest.raises(TypeError, match="adapter"):
        Retain()(loaded.model, Retain().collate([example], 0))
