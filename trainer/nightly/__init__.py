"""`trainer nightly`: consent-aware personalization fine-tunes.

lock -> export (opted-in logs) -> clean (scrub, split) -> LoRA fine-tune per target -> evaluate -> gate
-> registry (versioned adapter directories + Redis record + reload event) -> report.
"""
