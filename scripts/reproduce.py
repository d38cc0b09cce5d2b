#!/usr/bin/env python3
"""Run every claim's sweep for a profile, then write the report: `make reproduce-figures`.
The pipeline is bnexp/pipeline/; `python scripts/reproduce.py --help` lists the options."""

from pathlib import Path

from bnexp.pipeline.reproduce import main

if __name__ == "__main__":
    main(checkout=Path(__file__).resolve().parents[1])
