"""Change history pages in the admin: read-only, and naming the API key behind an API change."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from simple_history.admin import SimpleHistoryAdmin


class AttributedHistoryAdmin(SimpleHistoryAdmin):
    """An admin page whose "History" lists every recorded change and who made it.

    "Changed by" shows the person, or "API key <name> (<key id>)" for a change made through the REST
    API (``history_api_key``, catalog/history.py). History is an audit trail to read, never a way to
    write: reverting a price would restore its fields without its tier rows and skip the tier checks,
    reverting an invoice would bypass its state machine, so "Revert" is off for everyone.
    """

    object_history_list_template = "admin/attributed_history_list.html"

    def revert_disabled(self, request, obj=None) -> bool:
        return True

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method == "POST":
            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)

    def get_history_queryset(self, request, history_manager, pk_name, object_id):
        return (
            super().get_history_queryset(request, history_manager, pk_name, object_id).select_related("history_api_key")
        )
