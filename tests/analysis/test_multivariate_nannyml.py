"""The reconstruction error is NannyML's: per 5,000-row chunk of its car-loan dataset, every
chunk a scope of one call, equal to ``DataReconstructionDriftCalculator``'s (measured: largest
relative difference 4.1e-15, clean; 6.0e-15 with missing values and unseen categories)."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from monitor.analysis import ReferenceProfile
from monitor.analysis.multivariate import Reconstruction, analyse_multivariate
from monitor.schema import feature_column

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"  # NannyML phones home otherwise
nml: Any = pytest.importorskip("nannyml")

FEATURES = [
    "car_value",
    "salary_range",
    "debt_to_income_ratio",
    "loan_length",
    "repaid_loan_on_prev_car",
    "size_of_downpayment",
    "driver_tenure",
]
CHUNK = 5_000


@pytest.fixture(scope="module")
def car_loan() -> tuple[pd.DataFrame, pd.DataFrame]:
    with warnings.catch_warnings():
        # NannyML's dataset loader uses importlib.resources.path, deprecated in Python 3.11;
        # only the loading of its bundled files warns, none of the calculations compared.
        warnings.filterwarnings("ignore", "path is deprecated", DeprecationWarning)
        reference, analysis, _ = nml.load_synthetic_car_loan_dataset()
    return reference, analysis


def window_shaped(frame: pd.DataFrame) -> pd.DataFrame:
    """The features as a window holds them: prefixed, text as categoricals."""
    out = pd.DataFrame({feature_column(name): frame[name] for name in FEATURES})
    for column in out:
        if out[column].dtype == object:
            out[column] = out[column].astype("category")
    return out


def nannyml_chunks(reference: pd.DataFrame, analysis: pd.DataFrame) -> tuple[Any, pd.DataFrame]:
    calculator = nml.DataReconstructionDriftCalculator(column_names=FEATURES, chunk_size=CHUNK)
    calculator.fit(reference)
    return calculator, calculator.calculate(analysis).filter(period="analysis").to_df()


def ours(reference: pd.DataFrame, analysis: pd.DataFrame) -> tuple[Reconstruction, pd.DataFrame]:
    shaped = window_shaped(reference)
    fit = Reconstruction.fit(shaped, ReferenceProfile.build(shaped))
    chunk = np.arange(len(analysis)) // CHUNK
    result = analyse_multivariate(fit, window_shaped(analysis), {"chunk": chunk})
    return fit, result.to_frame()


def relative_difference(mine: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.max(np.abs(mine / theirs - 1.0)))


def test_the_error_of_every_chunk_is_nannyml_s_from_one_call(
    car_loan: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    reference, analysis = car_loan
    calculator, theirs = nannyml_chunks(reference, analysis)

    fit, frame = ours(reference, analysis)

    chunks = frame[frame.scope_kind == "chunk"]
    assert list(chunks.scope_key) == [str(i) for i in range(10)]
    assert (chunks.n_rows == CHUNK).all()
    assert fit.n_components == calculator._pca.n_components_ == 4
    error = chunks.reconstruction_error.to_numpy()
    assert relative_difference(error, theirs[("reconstruction_error", "value")].to_numpy()) < 0.01
    # The same chunks break our thresholds (scaled to 5,000 rows) as break NannyML's: the
    # second half of the analysis data, where NannyML's documentation shows the drift.
    alerts = theirs[("reconstruction_error", "alert")].to_numpy(dtype=bool)
    assert alerts.tolist() == [False] * 5 + [True] * 5
    assert chunks.nannyml_drifted.tolist() == alerts.tolist()
    assert chunks.drifted.tolist() == alerts.tolist()
    # The fleet (all 50,000 rows) is drifted, as half its rows are.
    assert frame.iloc[0].scope_kind == "fleet" and frame.iloc[0].drifted


def test_missing_values_and_unseen_categories_are_read_as_nannyml_reads_them(
    car_loan: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    reference, analysis = (frame.copy() for frame in car_loan)
    rng = np.random.default_rng(0)
    for frame in (reference, analysis):
        for name in ("car_value", "salary_range", "debt_to_income_ratio", "size_of_downpayment"):
            frame.loc[rng.random(len(frame)) < 0.05, name] = np.nan
    # Categories the reference never had: NannyML's CountEncoder gives them frequency 0.
    analysis.loc[rng.random(len(analysis)) < 0.05, "salary_range"] = "unseen"
    analysis.loc[rng.random(len(analysis)) < 0.05, "size_of_downpayment"] = "99%"
    _, theirs = nannyml_chunks(reference, analysis)

    _, frame = ours(reference, analysis)

    error = frame[frame.scope_kind == "chunk"].reconstruction_error.to_numpy()
    assert relative_difference(error, theirs[("reconstruction_error", "value")].to_numpy()) < 0.01
