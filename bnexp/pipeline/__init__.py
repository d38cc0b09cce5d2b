"""A profile's main job, inside the package (scripts/reproduce.py is its entry point):

    schedule.py   each stage's sweeps expanded, run side by side on the job slots, one progress bar
    looks.py      the verdict stage, look by look, as the registered sequential plans ask
    reproduce.py  the command line: calibration, then the verdicts, then the report
"""
