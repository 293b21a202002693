"""Per-tier limits come from the environment, and bad values name the variable."""

import pytest

from mdstudio_core.domain.errors import InvalidInput
from mdstudio_core.domain.model import Tier
from mdstudio_core.service_layer.profiling import ProfileLimits, limits_for_tiers, tier_limits


def test_defaults_and_overrides():
    assert tier_limits({}) == {tier: ProfileLimits(600.0, None) for tier in Tier}
    limits = tier_limits(
        {"MDSTUDIO_TIER1_TIMEOUT_SECONDS": "60", "MDSTUDIO_TIER3_SAMPLE_PERCENT": "5"}
    )
    assert limits[Tier.TIER1] == ProfileLimits(60.0, None)
    assert limits[Tier.TIER3] == ProfileLimits(600.0, 5.0)
    # A table shared by tiers gets the shortest timeout, and samples only if all tiers do.
    assert limits_for_tiers([Tier.TIER1, Tier.TIER3], limits) == ProfileLimits(60.0, None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MDSTUDIO_TIER2_TIMEOUT_SECONDS", "soon"),
        ("MDSTUDIO_TIER2_TIMEOUT_SECONDS", "-1"),
        ("MDSTUDIO_TIER3_SAMPLE_PERCENT", "150"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(InvalidInput, match=name):
        tier_limits({name: value})
