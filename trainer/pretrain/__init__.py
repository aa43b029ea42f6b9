"""Pretraining a GPT from random weights: data, tokenizer, model, training loop, checkpoints."""
