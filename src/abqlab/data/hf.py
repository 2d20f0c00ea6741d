"""Text from the ``datasets`` library (WikiText-2, C4, ...) for users with a network."""

from __future__ import annotations

from abqlab.config import DataConfig


class NetworkUnavailableError(RuntimeError):
    """A dataset needed the network and none was reachable."""


def hf_articles(cfg: DataConfig, split: str) -> tuple[str, ...]:
    """Documents of ``split`` from ``cfg.hf_path`` (``cfg.hf_name``), non-empty texts only."""
    import datasets

    split_name = cfg.test_split if split == "test" else cfg.train_split
    try:
        data = datasets.load_dataset(cfg.hf_path, cfg.hf_name, split=split_name)
    except (ConnectionError, OSError, ValueError) as error:
        if _looks_offline(error):
            raise NetworkUnavailableError(
                f"data={cfg.name}: '{cfg.hf_path}' needs the Hugging Face Hub and the network "
                "is unreachable; use data=wiki (embedded) offline"
            ) from error
        raise
    texts = (row[cfg.text_field] for row in data)
    return tuple(t for t in texts if t and t.strip())


def _looks_offline(error: Exception) -> bool:
    text = f"{type(error).__name__} {error}".lower()
    markers = (
        "connect",
        "offline",
        "resolve",
        "network",
        "couldn't reach",
        "not find",
        "timed out",
    )
    return any(marker in text for marker in markers)
