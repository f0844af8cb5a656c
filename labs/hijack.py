"""hijack: being built (issue 4); no cases yet."""

PARAMETERS = ("scenario",)
AXES = {}
STEPS = ()
STEP_VALUES = {}
MEASURES = ()
TUNABLE = {}


def cases(host):
    return iter(())


class Context:
    def __init__(self, host):
        pass

    def close(self):
        pass


def run_case(context, params):
    raise NotImplementedError
