"""shared.azureml.quota.quota_problem against an in-memory compute listing (tests/support/fake_quota.py)."""

from __future__ import annotations

import logging

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError

from shared.azureml.quota import quota_problem
from shared.errors import AzureMLError, TransientError, TuneflowError
from tests.support.fake_quota import usage, vm_size, workspace

A100 = "standardNCADSA100v4Family"
SIZES = [
    vm_size("Standard_NC24ads_A100_v4", A100, 24),
    vm_size("Standard_NC48ads_A100_v4", A100, 48, gpus=2),
    vm_size("Standard_NC6s_v3", "standardNCSv3Family", 6),
]


def test_a_run_that_fits_is_no_problem() -> None:
    ws = workspace(SIZES, [usage(A100, 24, 96)])
    assert quota_problem(ws, "Standard_NC24ads_A100_v4", 1) is None
    assert quota_problem(ws, "standard_nc24ADS_a100_v4", 3) is None  # 24 + 72 = 96: exactly the limit fits


def test_an_exhausted_family_names_what_is_short() -> None:
    ws = workspace(SIZES, [usage(A100, 96, 96)])
    assert quota_problem(ws, "Standard_NC24ads_A100_v4", 1) == (
        "needs 24 cores of family standardNCADSA100v4Family (Standard_NC24ads_A100_v4 × 1); 96 of 96 in use"
    )


def test_cores_are_the_size_s_vcpus_times_the_instances() -> None:
    ws = workspace(SIZES, [usage(A100, 24, 96)])
    assert quota_problem(ws, "Standard_NC48ads_A100_v4", 2) == (
        "needs 96 cores of family standardNCADSA100v4Family (Standard_NC48ads_A100_v4 × 2); 24 of 96 in use"
    )
    assert quota_problem(ws, "Standard_NC48ads_A100_v4", 0) is None


def test_the_family_is_found_however_azure_spells_it() -> None:
    # The REST spec's examples name usages "Standard NC Family Cluster Dedicated vCPUs" (value and localizedValue).
    spelled = "Standard NCADSA100v4 Family Cluster Dedicated vCPUs"
    ws = workspace(SIZES, [usage(spelled, 90, 96, localized=spelled)])
    problem = quota_problem(ws, "Standard_NC24ads_A100_v4", 1)
    assert problem is not None and problem.endswith("; 90 of 96 in use") and A100 in problem


def test_low_priority_and_other_families_do_not_count() -> None:
    ws = workspace(SIZES, [
        usage("Standard NCADSA100v4 Family Cluster LowPriority vCPUs", 96, 96),
        usage("standardNCSv3Family", 48, 48),
        usage(A100, 0, 96),
    ])
    assert quota_problem(ws, "Standard_NC24ads_A100_v4", 1) is None


def test_a_workspace_share_below_the_subscription_s_blocks_too() -> None:
    ws = workspace(SIZES, [usage(A100, 24, 96), usage(A100, 24, 24, kind="workspaces")])
    assert quota_problem(ws, "Standard_NC24ads_A100_v4", 1) == (
        "needs 24 cores of family standardNCADSA100v4Family (Standard_NC24ads_A100_v4 × 1); 24 of 24 in use"
    )


def test_an_unlimited_entry_never_blocks() -> None:
    assert quota_problem(workspace(SIZES, [usage(A100, 500, -1)]), "Standard_NC24ads_A100_v4", 4) is None


def test_an_unknown_size_is_let_through_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    ws = workspace(SIZES, [usage(A100, 96, 96)])
    with caplog.at_level(logging.WARNING, logger="shared.azureml.quota"):
        assert quota_problem(ws, "Standard_ND96isr_H100_v5", 1) is None
    assert "Standard_ND96isr_H100_v5" in caplog.text and "not among" in caplog.text
    assert ws.compute.calls == ["list_sizes"]  # nothing to look up in the usages


def test_a_family_azure_does_not_report_is_let_through_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    ws = workspace(SIZES, [usage("standardNCSv3Family", 48, 48)])
    with caplog.at_level(logging.WARNING, logger="shared.azureml.quota"):
        assert quota_problem(ws, "Standard_NC24ads_A100_v4", 1) is None
    assert A100 in caplog.text and "no usage" in caplog.text


def _http_error(status: int) -> HttpResponseError:
    error = HttpResponseError(message=f"answered {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(("error", "expected"), [
    (_http_error(429), TransientError),
    (_http_error(503), TransientError),
    (ServiceRequestError("connection refused"), TransientError),
    (_http_error(403), AzureMLError),
])
def test_sdk_errors_become_tuneflow_errors(error: Exception, expected: type[TuneflowError]) -> None:
    with pytest.raises(expected, match="listing VM sizes") as info:
        quota_problem(workspace(SIZES, [], error=error), "Standard_NC24ads_A100_v4", 1)
    assert expected is AzureMLError or info.value.transient
