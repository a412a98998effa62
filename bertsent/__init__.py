"""bertsent: a hand-written PyTorch loop that fine-tunes BERT-family models for sentiment."""

__version__ = "0.1.0"
