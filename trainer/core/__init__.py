"""The trainer's one core, shared by `trainer pretrain`, `trainer finetune` and `trainer nightly`.

The data path: text (text.py) and conversations (examples.py) become examples, token ids with labels;
batches.py pads them into batches within a token budget, epoch by epoch. One loop (loop.py) trains any
model on any objective (objectives.py: next-token cross-entropy, and sigmoid DPO and KTO on members'
rated replies, each batching its own kind of example; mixture.py adds them up in one step); finetuning.py
is the fine-tune recipe both fine-tuning commands use; evaluation.py measures (losses, perplexity, bits per
character, BLEU and chrF); models.py loads models and puts LoRA on them; config.py holds every command's
settings, from which the command line takes its defaults. distributed.py and lr_schedule.py serve the loop.

Nothing heavy is imported here: config.py stays torch-free for the command line's sake.
"""
