"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class LavaloopError(Exception):
    """Base class of all user-facing errors."""


class CheckpointError(LavaloopError):
    """A checkpoint that cannot be read or whose layout is not supported."""


class ShapeMismatchError(LavaloopError):
    """A network whose input/output shape does not fit the environment."""


class ArtifactError(LavaloopError):
    """An artifact file that is missing, corrupted, foreign or inconsistent."""


class ProfileError(LavaloopError):
    """An unknown chip profile, or a network that breaks one of its limits."""
