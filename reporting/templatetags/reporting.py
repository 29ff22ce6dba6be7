"""``{% billing_home %}``: the dashboard above the admin index's app list (templates/admin/index.html)."""

from django import template
from django.utils import timezone

from reporting.home import billing_home as billing_home_context

register = template.Library()


@register.inclusion_tag("reporting/home.html", takes_context=True)
def billing_home(context):
    request = context["request"]
    return {"request": request, **billing_home_context(request=request, now=timezone.now())}
