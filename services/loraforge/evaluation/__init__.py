"""Likeness evaluation of trained LoRA checkpoints: identity, collapse, prompt adherence,
validation loss, checkpoint choice, strength recommendation and hyper-parameter sweeps.

Every scorer takes renders as images (BGR uint8 arrays, RGB PIL images or file paths) and the
same face backends as curation, so that "the same person" means the same thing when a dataset
is built and when a checkpoint trained on it is judged.
"""
