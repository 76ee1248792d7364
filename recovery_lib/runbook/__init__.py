"""The runbook: notebooks executed by papermill, with the evidence of every execution kept in ``runs/``.

Who owns what::

    notebooks.py    the runbook's notebooks: order, glued report, options, headline
    parameters.py   a notebook's declared parameters, and command-line strings as those types
    execute.py      run_notebook: papermill execution and the runner's own verdict
    evidence.py     the files of a run: claimed name, scrubbed notebook, HTML, extracted report
    audit.py        the hash-chained runs/index.jsonl
    kernel.py       what the notebooks call inside their kernel: setup, glue, display tables
    charts.py       plotly figures from report dicts, and the renderer that keeps them in archives
    demo.py         the whole runbook on a generated incident, checked against its ground truth

Submodules are imported where used (papermill and nbconvert are slow to import).
"""
