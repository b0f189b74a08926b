from tortoise import migrations
from tortoise.migrations import operations as ops

"""A plan history entry says what ended it. One closed by a change of plan kept its subscription's live
status (ACTIVE with an end date): it now reads REPLACED. One closed by the subscription's end already
reads CANCELED or EXPIRED (the end sets the status before it closes the entry). The column keeps its
type: only the values it may hold grew (models.enums.PlanHistoryStatus)."""

REPLACED_ENTRIES = (
    "UPDATE subscription_history SET status = 'REPLACED' "
    "WHERE ended_at IS NOT NULL AND status IN ('TRIALING', 'ACTIVE', 'PAST_DUE')"
)


class Migration(migrations.Migration):
    dependencies = [('models', '0008_auto_billing')]

    initial = False

    operations = [
        ops.RunSQL([REPLACED_ENTRIES]),
    ]
