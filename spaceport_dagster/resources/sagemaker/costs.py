"""An on-demand price table for cost estimates (USD per instance-hour, us-east-1 SageMaker list prices).

Prices change and differ by region: override them through the launcher's `prices` setting. The estimate is
billable seconds x price x instance count; for managed spot, SageMaker's BillableTimeInSeconds already
carries the spot saving.
"""

from __future__ import annotations

DEFAULT_PRICES_USD_PER_HOUR: dict[str, float] = {
    "ml.c6i.xlarge": 0.204,
    "ml.c6i.2xlarge": 0.408,
    "ml.c6i.4xlarge": 0.816,
    "ml.c6i.8xlarge": 1.632,
    "ml.g5.xlarge": 1.408,
    "ml.g5.2xlarge": 1.515,
    "ml.g5.4xlarge": 2.03,
    "ml.g4dn.xlarge": 0.736,
}


def estimate_cost(instance_type: str, billable_s: float, instance_count: int = 1,
                  prices: dict[str, float] | None = None) -> float | None:
    """USD, or None when the instance type has no price in the table."""
    table = {**DEFAULT_PRICES_USD_PER_HOUR, **(prices or {})}
    price = table.get(instance_type)
    if price is None:
        return None
    return round(billable_s / 3600.0 * price * instance_count, 4)
