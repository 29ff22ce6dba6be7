"""Webhooks per Standard Webhooks: event subscriptions by type, the merchant's on/off switch, one row per
attempt, one delivery per (event, endpoint), and signing secrets in the ``whsec_<base64 key>`` form.

Existing secrets were used as HMAC keys byte for byte (``secret.encode()``); each becomes
``whsec_`` + base64 of those bytes, so the key does not change: a receiver that knew the old secret can
verify the new headers with its old key bytes, or with the new secret in any Standard Webhooks library.
"""

import base64

import core.ids
import django.db.models.deletion
import wallets.models
from django.db import migrations, models


def secrets_to_standard_form(apps, schema_editor):
    WebhookEndpoint = apps.get_model("wallets", "WebhookEndpoint")
    for endpoint in WebhookEndpoint.objects.all().only("id", "secret"):
        endpoint.secret = "whsec_" + base64.b64encode(endpoint.secret.encode()).decode()
        endpoint.save(update_fields=["secret"])


def secrets_to_raw_form(apps, schema_editor):
    WebhookEndpoint = apps.get_model("wallets", "WebhookEndpoint")
    for endpoint in WebhookEndpoint.objects.all().only("id", "secret"):
        try:
            endpoint.secret = base64.b64decode(endpoint.secret.removeprefix("whsec_")).decode()
        except (ValueError, UnicodeDecodeError):  # a random key has no text form: kept whole, as the old key
            continue
        endpoint.save(update_fields=["secret"])


class Migration(migrations.Migration):

    dependencies = [
        ('catalog', '0008_price_rate_per'),
        ('wallets', '0006_lot_index_without_remaining'),
    ]

    operations = [
        migrations.CreateModel(
            name='WebhookAttempt',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('attempted_at', models.DateTimeField()),
                ('response_code', models.PositiveIntegerField(blank=True, null=True)),
                ('error', models.TextField(blank=True)),
                ('manual', models.BooleanField(default=False, help_text='A replay asked for by the merchant or an operator.')),
            ],
            options={
                'ordering': ['-attempted_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='WebhookSettings',
            fields=[
                ('id', core.ids.PublicIdField(editable=False, max_length=40, prefix='app', primary_key=True, serialize=False)),
                ('enabled', models.BooleanField(default=True)),
                ('created_at', models.DateTimeField(editable=False)),
                ('updated_at', models.DateTimeField(editable=False)),
            ],
            options={
                'verbose_name': 'webhook settings',
                'verbose_name_plural': 'webhook settings',
            },
        ),
        migrations.AddField(
            model_name='webhookendpoint',
            name='description',
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name='webhookendpoint',
            name='previous_secret',
            field=models.CharField(blank=True, editable=False, max_length=200),
        ),
        migrations.AddField(
            model_name='webhookendpoint',
            name='previous_secret_expires_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name='webhookendpoint',
            name='event_types',
            field=models.JSONField(blank=True, default=list, help_text='e.g. ["invoice.paid.v0", "balance.low"] (a name without version: every version); empty = every event.', validators=[wallets.models.validate_webhook_event_types]),
        ),
        migrations.AlterField(
            model_name='webhookendpoint',
            name='secret',
            field=models.CharField(default=wallets.models.webhook_secret_new, editable=False, max_length=200),
        ),
        migrations.AddConstraint(
            model_name='webhookdelivery',
            constraint=models.UniqueConstraint(fields=('event_id', 'endpoint'), name='webhook_delivery_once_per_endpoint'),
        ),
        migrations.AddField(
            model_name='webhookattempt',
            name='delivery',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempt_log', to='wallets.webhookdelivery'),
        ),
        migrations.AddField(
            model_name='webhooksettings',
            name='merchant',
            field=models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='webhook_settings', to='catalog.merchant'),
        ),
        migrations.RunPython(secrets_to_standard_form, secrets_to_raw_form),
    ]
