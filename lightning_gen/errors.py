"""Errors a user can cause and fix: the CLI prints their message as one sentence and exits 2."""


class UserError(Exception):
    """A mistake in the data, a path or a config value; the message says what, where and how to fix it."""


class MissingDatasetError(UserError):
    """The dataset's root folder (or a file it must hold) does not exist."""

    def __init__(self, dataset: str, root, expected: str, download: str):
        super().__init__(
            f"{dataset} not found at '{root}': expected {expected}; download it from {download} "
            f"and set data.root (e.g. --data.root /path/to/it)."
        )
