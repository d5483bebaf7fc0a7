"""One family of engine exceptions.

Every message is written for the person who asked for the job: the bot shows it as is, the CLI prints
it after ``error:``. Internal details belong in the log, not here.
"""


class EngineError(Exception):
    """Base class: something the user can understand and usually fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SettingsError(EngineError):
    """A setting is missing, of the wrong type or out of its range."""


class ImageError(EngineError):
    """The input image cannot be used (not an image, corrupt, too large)."""


class MaskError(EngineError):
    """The mask cannot be used (empty, wrong shape, no mask source at all)."""


class NoMaskError(MaskError):
    """Nothing says where to repaint: no mask picture, no words or faces to find, no transparency.
    Discord answers it with a link to the painter, when the operator runs one."""


class NoFaceError(MaskError):
    """The automatic face mask found no face."""


class ModelLoadError(EngineError):
    """A model could not be loaded (not found, offline, not an inpainting-capable pipeline)."""


class OutOfMemoryError(EngineError):
    """The GPU ran out of memory; memory was freed and the engine can take the next job."""


class JobCancelled(EngineError):
    """The job was cancelled by its owner. Not a failure: callers report it differently."""

    def __init__(self, message: str = "The job was cancelled.") -> None:
        super().__init__(message)
