"""Plans over time: the subscription lifecycle, renewals and dunning, plans about to end, limits and entitlements
(add-ons, reported metrics), workspace status, add-ons paid in points."""
