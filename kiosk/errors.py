"""The kiosk's exception tree. Every message says what to do about it."""


class KioskError(Exception):
    """Base of every error the kiosk reports to an operator."""

    exit_status = 1


class ConfigError(KioskError):
    """The configuration is wrong. Carries every problem found, not just the first."""

    exit_status = 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


class DeviceError(KioskError):
    """A camera, reader, display or pin could not be used. The message names the likely fix."""

    exit_status = 69  # EX_UNAVAILABLE


class DataError(KioskError):
    """An input file (roster CSV, trust list) was rejected. Nothing was changed."""

    exit_status = 65  # EX_DATAERR
    MAX_LISTED = 200  # a wrong file can have a million bad lines: the first ones show what is wrong

    def __init__(self, message: str, problems: list[str] | None = None, omitted: int = 0):
        """`omitted`: how many more problems there were beyond `problems` (a caller that kept only the first)."""
        problems = list(problems or [])
        omitted += max(0, len(problems) - self.MAX_LISTED)
        problems = problems[:self.MAX_LISTED] + ([f"... and {omitted} more"] if omitted else [])
        self.problems = problems
        text = message if not self.problems else message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


class StorageError(KioskError):
    """The journal or a data file could not be written (disk full, read-only, permissions)."""

    exit_status = 74  # EX_IOERR
