"""Notification preferences: notificationPreferences, updateNotificationPreferences.

A signed-in customer's own setting only (there is no argument naming a user); anonymous
callers get UNAUTHENTICATED.
"""

from __future__ import annotations

import strawberry

from app.graphql.context import Info


@strawberry.type(description="Which optional emails the signed-in customer gets.")
class NotificationPreferences:
    milestone_emails: bool = strawberry.field(
        description=(
            "Emails about a parcel's progress: out for delivery, delayed, delivery attempted, "
            "delivery exception, delivered. Order confirmation, cancellation, shipping, "
            "refunds and return steps are always sent."
        )
    )


@strawberry.type
class NotificationsQuery:
    @strawberry.field(description="The signed-in customer's email preferences.")
    async def notification_preferences(self, info: Info) -> NotificationPreferences:
        preferences = info.context.services.preferences
        wanted = await preferences.get(await info.context.viewer())
        return NotificationPreferences(milestone_emails=wanted)


@strawberry.type
class NotificationsMutation:
    @strawberry.mutation(
        description="Switch the optional milestone emails on or off (the caller's own)."
    )
    async def update_notification_preferences(
        self, info: Info, milestone_emails: bool
    ) -> NotificationPreferences:
        preferences = info.context.services.preferences
        wanted = await preferences.update(
            await info.context.viewer(), milestone_emails=milestone_emails
        )
        return NotificationPreferences(milestone_emails=wanted)
