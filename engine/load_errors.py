"""What to tell the operator when a model does not load or cannot be read.

diffusers and transformers wrap the Hub's errors in generic ones (an ``OSError`` that a file is
missing); the cause under them says what to fix: a typo in the name, no network, a private repo. Both
the config readers (``engine.model_facts``) and the loaders (``engine.loading``) say it the same way.
"""

from __future__ import annotations

from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)


def describe_load_failure(
    name: str,
    exc: BaseException,
    expected: str = "a Stable Diffusion (1.x, 2.x or XL) inpainting model",
    what: str = "model",
) -> str:
    """diffusers wraps Hub errors in generic ones; the original cause says what the user must fix."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, RepositoryNotFoundError):
            return f"The {what} {name!r} was not found on the Hugging Face Hub (or it is private)."
        if isinstance(cause, LocalEntryNotFoundError):
            return (
                f"The {what} {name!r} is not in the local Hugging Face cache and the Hub cannot be "
                "reached (offline?). Download it once with network access, or use a local folder."
            )
        if isinstance(cause, HfHubHTTPError):
            return f"The {what} {name!r} could not be downloaded: {first_line(cause)}"
        cause = cause.__cause__ or cause.__context__
    return f"The {what} {name!r} could not be loaded as {expected}: {first_line(exc)}"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
