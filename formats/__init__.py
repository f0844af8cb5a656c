"""The run format and every file socklab reads, beneath both the controller (collect/) and the analysis
(analysis/): they hand each other a run through it and import nothing of each other.

    errors      UserError: a mistake in what was given, one line `file:line: field: problem`
    textfile    a file's bytes and text: bounded, strictly UTF-8, no control characters
    yamlfile    YAML with the line of every value; duplicate keys, tags and alias bombs refused
    jsonfile    JSON of a file or a line, keys given twice and NaN refused, the line of a field for errors
    records     the agent's record kinds (host, plan, case, end): every field's type and values, in one place
    hostlog     <host>.jsonl: appended line by line, read and checked whole
    manifest    manifest.json: its fields checked on read, written whole (write, then rename)
    rundir      run directories: where they are, the newest, a run read whole, one writer at a time (a lock)
    table       results.csv: the tidy table's columns, made from the logs, read checked, written whole
"""
