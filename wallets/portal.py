"""The merchant's webhook portal: pages reached by a signed, expiring link (``GET /v0/webhooks/portal``),
without a login, scoped to the merchant the link names. There the merchant adds, edits and deletes
endpoints, picks their event types, reveals and rotates the signing secret, reads the delivery attempts
and replays a delivery. Forms post with Django's CSRF token.

The link is ``/webhooks/portal/<token>/`` where ``token`` is ``django.core.signing`` of the merchant id
and the expiry (``PORTAL_LINK_TTL``); a forged or altered token is 404, an expired one 403. Whoever
holds the link acts for the merchant until it expires, like Svix's magic links: the pages send
``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store`` so it does not leak from the browser.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django import forms
from django.core import signing
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from catalog.models import Merchant

from .models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, WebhookEventType, WebhookSettings
from .webhooks import (
    webhook_delivery_replay,
    webhook_endpoint_delete,
    webhook_endpoint_save,
    webhook_endpoint_secret_rotate,
)

PORTAL_LINK_TTL = timedelta(hours=1)
PORTAL_SALT = "wallets.webhook-portal"
DELIVERIES_SHOWN = 50


class PortalLinkExpired(Exception):
    pass


def webhook_portal_token(
    *, merchant: Merchant, now: datetime, ttl: timedelta = PORTAL_LINK_TTL
) -> tuple[str, datetime]:
    """A signed token naming ``merchant`` until ``now + ttl``; returns it and its expiry (whole seconds)."""
    expires_at = datetime.fromtimestamp(int((now + ttl).timestamp()), tz=UTC)
    token = signing.dumps({"m": merchant.pk, "e": int(expires_at.timestamp())}, salt=PORTAL_SALT)
    return token, expires_at


def webhook_portal_link(*, merchant: Merchant, now: datetime) -> tuple[str, datetime]:
    """The portal's path for ``merchant`` and when it expires (the API makes it absolute)."""
    token, expires_at = webhook_portal_token(merchant=merchant, now=now)
    return reverse("webhook-portal-home", args=[token]), expires_at


def webhook_portal_merchant(*, token: str, now: datetime) -> Merchant:
    """The merchant a token names: ``signing.BadSignature`` when forged, ``PortalLinkExpired`` when expired."""
    claims = signing.loads(token, salt=PORTAL_SALT)
    if now.timestamp() >= claims["e"]:
        raise PortalLinkExpired
    return Merchant.objects.get(pk=claims["m"])


class EndpointForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https", label="Endpoint URL")
    event_types = forms.MultipleChoiceField(
        choices=WebhookEventType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event, including types added later.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "event_types", "enabled")


def _portal(view):
    """Resolve the token to its merchant (404 forged, 403 expired) and harden the response."""

    def wrapped(request, token: str, *args, **kwargs):
        try:
            merchant = webhook_portal_merchant(token=token, now=timezone.now())
        except (signing.BadSignature, KeyError, TypeError, Merchant.DoesNotExist):
            raise Http404("No such portal link.") from None
        except PortalLinkExpired:
            response = TemplateResponse(request, "wallets/portal/expired.html", status=403)
        else:
            response = view(request, merchant, token, *args, **kwargs)
        response["Referrer-Policy"] = "no-referrer"
        response["Cache-Control"] = "no-store"
        return response

    return wrapped


def _page(request, template: str, merchant: Merchant, token: str, **context) -> HttpResponse:
    switch = WebhookSettings.objects.filter(merchant=merchant).first()
    return TemplateResponse(
        request,
        template,
        {"merchant": merchant, "token": token, "paused": switch is not None and not switch.enabled, **context},
    )


@require_http_methods(["GET", "POST"])
@_portal
def portal_home(request, merchant: Merchant, token: str) -> HttpResponse:
    """The merchant's endpoints, and the form that adds one."""
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        endpoint = form.save(commit=False)
        endpoint.merchant = merchant
        webhook_endpoint_save(endpoint=endpoint)
        return redirect("webhook-portal-endpoint", token=token, endpoint_id=endpoint.pk)
    endpoints = WebhookEndpoint.objects.filter(merchant=merchant).order_by("url", "pk")
    return _page(request, "wallets/portal/home.html", merchant, token, endpoints=endpoints, form=form)


@require_http_methods(["GET", "POST"])
@_portal
def portal_endpoint(request, merchant: Merchant, token: str, endpoint_id: str) -> HttpResponse:
    """One endpoint: edit it, reveal or rotate its secret, delete it; its deliveries and their attempts."""
    endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id, merchant=merchant)
    action = request.POST.get("action", "save")
    form = EndpointForm(request.POST if request.method == "POST" and action == "save" else None, instance=endpoint)
    if request.method == "POST":
        if action == "delete":
            webhook_endpoint_delete(endpoint=endpoint)
            return redirect("webhook-portal-home", token=token)
        if action == "rotate":
            webhook_endpoint_secret_rotate(endpoint=endpoint, now=timezone.now())
            return redirect(reverse("webhook-portal-endpoint", args=[token, endpoint.pk]) + "?reveal=1")
        if action == "save" and form.is_valid():
            webhook_endpoint_save(endpoint=form.save(commit=False))
            return redirect("webhook-portal-endpoint", token=token, endpoint_id=endpoint.pk)
    deliveries = list(
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .prefetch_related("attempt_log")
        .order_by("-created_at", "-pk")[:DELIVERIES_SHOWN]
    )
    return _page(
        request,
        "wallets/portal/endpoint.html",
        merchant,
        token,
        endpoint=endpoint,
        form=form,
        reveal=request.GET.get("reveal") == "1",
        deliveries=deliveries,
        statuses=DeliveryStatus,
    )


@require_POST
@_portal
def portal_delivery_replay(request, merchant: Merchant, token: str, delivery_id: str) -> HttpResponse:
    """Send a delivery again now; back to its endpoint's page."""
    delivery = get_object_or_404(WebhookDelivery, pk=delivery_id, endpoint__merchant=merchant)
    webhook_delivery_replay(delivery=delivery, now=timezone.now())
    return redirect("webhook-portal-endpoint", token=token, endpoint_id=delivery.endpoint_id)
