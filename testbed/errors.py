"""The test bed's one error: something on this machine kept a lab from coming up or going down, in one line."""


class LabError(Exception):
    """A lab could not be built, checked or removed; the message is one line saying what and why."""
