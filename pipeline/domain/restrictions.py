"""Platform restrictions: businesses suspended for abuse, countries closed to marketing."""

from __future__ import annotations

from pipeline.domain.models import (
    BusinessStatus,
    Category,
    Objection,
    Policy,
    Reason,
    Recipient,
)


def suspension_verdict(business_id: str, policy: Policy) -> Objection | None:
    """Return BUSINESS_SUSPENDED if the platform suspended the business, else None.

    The profile comes from the policy file overlaid with the business-profiles topic, so
    abuse flagged on any of the platform's apps stops every message from the business.
    """
    profile = policy.businesses.get(business_id)
    if profile is None or profile.status != BusinessStatus.SUSPENDED:
        return None
    return Reason.BUSINESS_SUSPENDED, "business suspended by the platform"


def country_verdict(category: Category, recipient: Recipient, policy: Policy) -> Objection | None:
    """Return COUNTRY_RESTRICTED for marketing to a number of a restricted region."""
    restricted = policy.restricted_marketing_regions
    if category != Category.MARKETING or recipient.region not in restricted:
        return None
    return (
        Reason.COUNTRY_RESTRICTED,
        f"marketing to numbers of region {recipient.region} is restricted by policy",
    )
