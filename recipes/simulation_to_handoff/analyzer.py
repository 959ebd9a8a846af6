"""Rank simulated-but-not-handed-off leads: the fresher the simulation, the higher."""

from datetime import date

import pandas as pd


def analyze(leads: pd.DataFrame, run_date: date) -> pd.DataFrame:
    out = leads.copy()
    hours = out["hours_since_simulation"]
    out["priority"] = pd.cut(
        hours, bins=[-1, 24, 72, 10_000], labels=["high", "medium", "low"]
    ).astype(str)
    return out.sort_values(["hours_since_simulation", "lead_id"]).reset_index(drop=True)
