"""The method that judges every claim, apart from the claims themselves (bnexp/claims/):

    contract.py    what a claim module declares: Claim, Version, Question, Use, Context, Result
    readings.py    what several claims read off a run record or the table
    stats.py       intervals over seeds, pairing by seed, the decision rule and how criteria combine
    sequential.py  group-sequential plans: looks, error spending, repeated confidence intervals
    protocol.py    a v3+ version's parts, fidelity guards, plan and neighbouring choices -> its verdict
    ledger/        the pre-registration ledger: the book, seeds, code hashes, git, the rules, re-certification
"""
