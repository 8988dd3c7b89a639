"""A bundled synthetic loan-default data set, with knobs to drift it on purpose.

The demo and the tests need realistic tabular data without a download: numeric and categorical
features, missing values, a sensitive attribute, and a target that depends on the features in a
non-trivial but learnable way. ``covariate_shift`` moves the feature distributions (what data drift
detects); ``concept_shift`` changes how features relate to the label (what only performance
monitoring on labelled feedback detects).
"""

from __future__ import annotations

from typing import Any

import numpy as np

TARGET = "default"
FEATURES = (
    "age",
    "income",
    "loan_amount",
    "loan_term_months",
    "credit_score",
    "debt_to_income",
    "num_open_accounts",
    "delinquencies_2y",
    "employment_years",
    "home_ownership",
    "purpose",
    "region",
    "gender",
)
SENSITIVE = ("gender",)


def loan_default(
    n: int,
    seed: int = 0,
    covariate_shift: float = 0.0,
    concept_shift: float = 0.0,
    missing_rate: float = 0.03,
) -> dict[str, list[Any]]:
    """``n`` rows as columns (JSON-friendly lists), target column ``default`` in {0, 1}.

    ``covariate_shift`` in [0, 1+]: younger, poorer, more indebted applicants and a shifted purpose mix.
    ``concept_shift`` in [0, 1+]: the weight of credit score fades and debt-to-income dominates.
    """
    rng = np.random.default_rng(seed)
    s = covariate_shift
    age = np.clip(rng.normal(41 - 8 * s, 11, n), 18, 90).round()
    income = np.exp(rng.normal(10.9 - 0.35 * s, 0.45, n)).round(-2)
    loan_amount = np.clip(rng.lognormal(9.4 + 0.3 * s, 0.6, n), 500, 250_000).round(-1)
    loan_term = rng.choice([12, 24, 36, 48, 60], n, p=[0.1, 0.15, 0.4, 0.15, 0.2]).astype(float)
    credit_score = np.clip(rng.normal(690 - 45 * s, 60, n), 300, 850).round()
    dti = np.clip(rng.beta(2.2, 6 - 2 * min(s, 1.5), n) * 0.9, 0, 0.9).round(3)
    open_accounts = rng.poisson(6 + 2 * s, n).astype(float)
    delinquencies = rng.poisson(0.25 + 0.5 * s, n).astype(float)
    employment_years = np.clip(rng.gamma(2.0, 3.5 - s, n), 0, 45).round(1)
    home = rng.choice(["rent", "mortgage", "own", "other"], n, p=[0.42, 0.4, 0.15, 0.03])
    purpose_p = np.array([0.35, 0.25, 0.15, 0.15, 0.1]) + s * np.array([-0.15, 0.05, 0.0, 0.0, 0.1])
    purpose = rng.choice(
        ["debt_consolidation", "credit_card", "home_improvement", "car", "small_business"],
        n,
        p=purpose_p / purpose_p.sum(),
    )
    region = rng.choice(["north", "south", "east", "west"], n, p=[0.3, 0.25, 0.25, 0.2])
    gender = rng.choice(["female", "male", "nonbinary"], n, p=[0.49, 0.49, 0.02])

    c = concept_shift
    logit = (
        -1.2
        - (1.0 - 0.8 * c) * (credit_score - 690) / 60
        + (1.8 + 2.5 * c) * (dti - 0.24) / 0.12
        + 0.35 * (loan_amount / income - 0.2) / 0.15
        + 0.45 * delinquencies
        - 0.25 * np.minimum(employment_years, 10) / 3.5
        + 0.4 * (purpose == "small_business")
        + 0.25 * (home == "rent")
        - 0.15 * (loan_term == 12)
    )
    default = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)

    columns: dict[str, list[Any]] = {
        "age": age.tolist(),
        "income": income.tolist(),
        "loan_amount": loan_amount.tolist(),
        "loan_term_months": loan_term.tolist(),
        "credit_score": credit_score.tolist(),
        "debt_to_income": dti.tolist(),
        "num_open_accounts": open_accounts.tolist(),
        "delinquencies_2y": delinquencies.tolist(),
        "employment_years": employment_years.tolist(),
        "home_ownership": home.tolist(),
        "purpose": purpose.tolist(),
        "region": region.tolist(),
        "gender": gender.tolist(),
    }
    for name in ("income", "employment_years", "home_ownership"):
        holes = rng.random(n) < missing_rate
        columns[name] = [None if h else v for v, h in zip(columns[name], holes, strict=True)]
    columns[TARGET] = default.tolist()
    return columns


def rows(columns: dict[str, list[Any]], include_target: bool = False) -> list[dict[str, Any]]:
    """Columns to request rows, the shape ``POST /predict`` takes."""
    names = [k for k in columns if include_target or k != TARGET]
    return [dict(zip(names, values, strict=True)) for values in zip(*(columns[k] for k in names), strict=True)]
