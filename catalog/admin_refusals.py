"""A service's refusal of an admin write, shown to the person instead of "changed successfully".

Django runs a change form inside one transaction: a ``ServiceRefused`` raised from ``save_model`` or
``save_related`` (the service said no to something the form could not foresee, e.g. a subscription
started meanwhile) rolls the whole save back, and ``ServiceRefusalAdminMixin`` turns it into an error
message on the same page. Nothing is saved and nothing is logged.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseRedirect


class ServiceRefused(Exception):
    """A service refused the admin's save; ``str()`` is the message the person reads."""


class ServiceRefusalAdminMixin:
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ServiceRefused as refused:
            self.message_user(request, str(refused), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
