"""abqlab: post-training quantization of LLMs at arbitrary bit widths."""

__version__ = "0.1.0"
