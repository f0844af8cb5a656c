"""The run format and every file socklab reads, beneath both the controller (collect/) and the analysis
(analysis/): they hand each other a run through it and import nothing of each other.

    errors      UserError: a mistake in what was given, one line `file:line: field: problem`
    yamlfile    YAML with the line of every value
"""
