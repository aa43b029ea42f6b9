"""Each kind of bad input stops with an error that names the problem, before any training starts."""

import json

import pytest
from typer.testing import CliRunner

from tests.trainer.conftest import TINY
from trainer.cli import app
from trainer.core.config import FinetuneConfig, PretrainConfig
from trainer.core.models import load_model
from trainer.errors import CheckpointError, ContextTooLongError, DataError, VocabularyTooSmallError
from trainer.eval_report import evaluate
from trainer.finetune import finetune
from trainer.pretrain.train import pretrain


def run_pretrain(tmp_path, data, **overrides):
    cfg = PretrainConfig(data=str(data), out_dir=str(tmp_path / "run"), **{**TINY, **overrides})
    return pretrain(cfg, progress=False)


def assert_nothing_written(tmp_path):
    assert not (tmp_path / "run").exists()


def test_an_empty_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.txt is empty"):
        run_pretrain(tmp_path, empty)
    assert_nothing_written(tmp_path)


def test_a_file_of_whitespace_and_a_directory_without_text(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\n\t \n")
    with pytest.raises(DataError, match="only whitespace"):
        run_pretrain(tmp_path, blank)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match="no text files"):
        run_pretrain(tmp_path, folder)
    assert_nothing_written(tmp_path)


def test_a_missing_data_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        run_pretrain(tmp_path, tmp_path / "nowhere.txt")


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 4, "binary file"),
        (b"some text" + b"\xff\xfe\xfa more", "not UTF-8"),
    ],
)
def test_a_binary_file(tmp_path, content, problem):
    binary = tmp_path / "model.bin"
    binary.write_bytes(content)
    with pytest.raises(DataError, match=rf"model\.bin .*{problem}|model\.bin is {problem}"):
        run_pretrain(tmp_path, binary)
    assert_nothing_written(tmp_path)


def test_a_vocabulary_too_small_for_the_data(tmp_path, corpus_file):
    distinct = len(set(corpus_file.read_text()))
    with pytest.raises(VocabularyTooSmallError, match=rf"too small.*{distinct} distinct characters.*--vocab-size"):
        run_pretrain(tmp_path, corpus_file, vocab_size=10)
    with pytest.raises(VocabularyTooSmallError, match="256 byte symbols"):
        run_pretrain(tmp_path, corpus_file, tokenizer="bpe", vocab_size=200)
    with pytest.raises(VocabularyTooSmallError, match="needs a vocabulary size"):
        run_pretrain(tmp_path, corpus_file, tokenizer="bpe")
    assert_nothing_written(tmp_path)


def test_a_context_longer_than_the_data(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("a short text of a few dozen characters, not more.\n" * 4)
    with pytest.raises(ContextTooLongError, match=r"context length 64 is longer than the data.*validation split"):
        run_pretrain(tmp_path, short, block_size=64)
    assert_nothing_written(tmp_path)


def test_a_missing_checkpoint(tmp_path, corpus_file):
    cfg = PretrainConfig(data=str(corpus_file), out_dir=str(tmp_path / "run"), **TINY)
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*gone does not exist"):
        pretrain(cfg, resume=tmp_path / "gone", progress=False)
    (tmp_path / "half").mkdir()
    with pytest.raises(CheckpointError, match="not a resumable checkpoint: checkpoint.json is missing"):
        pretrain(cfg, resume=tmp_path / "half", progress=False)


@pytest.mark.parametrize("part", ["model.safetensors", "checkpoint.json", "trainer_state.pt"])
def test_a_corrupt_checkpoint(tmp_path, gpt_run, part):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(gpt_run.dir / "checkpoints" / "last", broken)
    data = (broken / part).read_bytes()
    (broken / part).write_bytes(data[: len(data) // 2])  # a write cut off half way
    cfg = PretrainConfig(data=str(gpt_run.data), out_dir=str(tmp_path / "run"), **TINY)
    with pytest.raises(CheckpointError, match=rf"broken is corrupt.*{part.split('.')[0]}"):
        pretrain(cfg, resume=broken, progress=False)
    assert_nothing_written(tmp_path)


def test_a_missing_or_corrupt_model_for_sample_eval_and_finetune(tmp_path, gpt_run):
    with pytest.raises(CheckpointError, match="model not found"):
        load_model(str(tmp_path / "no-model"))
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="broken-model does not load"):
        load_model(str(broken))
    with pytest.raises(CheckpointError, match="model not found"):
        finetune(
            FinetuneConfig(model=str(tmp_path / "no-model"), data=str(gpt_run.data), out_dir=str(tmp_path / "ft")),
            progress=False,
        )
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        evaluate(load_model(str(gpt_run.dir)), empty)


def test_bad_chat_lines_are_named_by_number(tmp_path, gpt_run):
    chats = tmp_path / "chats.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    chats.write_text(json.dumps(good) + "\n" + "{oops\n")
    with pytest.raises(DataError, match=r"chats\.jsonl, line 2: not valid JSON"):
        evaluate(load_model(str(gpt_run.dir)), chats)
    chats.write_text(json.dumps({"text": "hi"}) + "\n")
    with pytest.raises(DataError, match=r"line 1: expected"):
        finetune(FinetuneConfig(model=str(gpt_run.dir), data=str(chats), out_dir=str(tmp_path / "ft")), progress=False)


def test_the_cli_prints_the_problem_without_a_traceback(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = CliRunner().invoke(app, ["pretrain", "--data", str(empty), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2
    assert "error:" in result.output and "empty.txt is empty" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["sample", "--model", str(tmp_path / "nothing-here")])
    assert result.exit_code == 2 and "model not found" in result.output
