"""Prepaid credit endpoints: balance, ledger and grants of one of the merchant's customers. Top-ups and
reserved capacity are sold on an invoice, so they live in invoicing (``invoicing/api/purchases.py``)."""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api.auth import request_merchant
from catalog.api.schema import currency_parameter
from catalog.api.views import CONFLICT, ERRORS, CatalogApi
from catalog.models import Customer
from core.api.errors import ApiError
from core.api.pagination import paginate
from core.api.schema import error_responses, paging_parameters
from core.api.serializers import list_output
from core.idempotency import IdempotencyKeysDiffer, idempotency_key_given

from .. import selectors, services
from ..errors import CommittedRateRefused, InvalidAmount, WalletError
from ..models import Commitment, Wallet
from .serializers import (
    CommitmentInput,
    CommitmentOutput,
    CreditInputSerializer,
    LedgerQuerySerializer,
    credit_out,
    entry_out,
    wallet_out,
)


def customer_or_404(request, customer_id: str) -> Customer:
    # Another merchant's customer is indistinguishable from a missing one: 404.
    return get_object_or_404(
        Customer.objects.only("id", "merchant_id", "currency"), pk=customer_id, merchant=request_merchant(request)
    )


def customer_with_wallets_or_404(request, customer_id: str) -> tuple[Customer, list[Wallet]]:
    """The merchant's customer and its wallets (one prepared statement); 404 like ``_customer``."""
    found = selectors.customer_with_wallets(merchant_id=request_merchant(request).pk, customer_id=customer_id)
    if found is None:
        raise Http404
    return found


class CustomerBalanceApi(APIView):
    # Must answer in < 10 ms (issue #7): the key → merchant look-up comes from the per-process cache
    # (catalog/api/auth.py); only the merchant's id is used, so its cached fields cannot be stale here.
    api_key_cache = True

    @extend_schema(operation_id="customers_balance", responses={200: OpenApiTypes.OBJECT}, tags=["prepaid credit"])
    def get(self, request, customer_id: str):
        customer, wallets = customer_with_wallets_or_404(request, customer_id)
        return Response(
            {"object": "customer_balance", "customerId": customer.pk, "balances": [wallet_out(w) for w in wallets]}
        )


class CustomerLedgerApi(APIView):
    @extend_schema(
        operation_id="customers_ledger",
        parameters=[
            currency_parameter(),
            *paging_parameters(),
        ],
        responses={200: OpenApiTypes.OBJECT},
        tags=["prepaid credit"],
    )
    def get(self, request, customer_id: str):
        query = LedgerQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        customer = customer_or_404(request, customer_id)
        entries = selectors.ledger_for_customer(customer=customer, currency=query.validated_data.get("currency"))
        rows, pagination = paginate(entries, request)
        return Response({"object": "list", "data": [entry_out(e) for e in rows], "pagination": pagination})


class _CreditApi(APIView):
    input_serializer = CreditInputSerializer

    def post(self, request, customer_id: str):
        customer = customer_or_404(request, customer_id)
        body = self.input_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            result = self.record(customer, data)
        except services.IdempotencyConflict as exc:
            raise ApiError(str(exc), status_code=409, code="IDEMPOTENCY_KEY_REUSED")
        except WalletError as exc:
            raise ApiError(str(exc), status_code=400, code="INVALID_CREDIT")
        return Response(credit_out(result), status=status.HTTP_200_OK if result.replayed else status.HTTP_201_CREATED)


@extend_schema(
    request=CreditInputSerializer,
    # 200: the idempotencyKey was already used with this body (the first answer, replayed); 409: with another.
    responses={200: OpenApiTypes.OBJECT, 201: OpenApiTypes.OBJECT, **error_responses(409)},
    tags=["prepaid credit"],
)
class CustomerGrantApi(_CreditApi):
    """A free (promotional) credit grant."""

    def record(self, customer, data):
        return services.credit_grant(
            customer=customer,
            currency=data.get("currency") or customer.currency,
            amount=data["amount"],
            idempotency_key=data["idempotencyKey"],
            expires_at=data.get("expiresAt"),
            description=data.get("description", ""),
            now=timezone.now(),
        )


# -- commitments: a Meterline extension (the Paygentic client has no commitments operations) ------------
# Idempotent as POST /v2/invoices/lineItems is (invoicing/api/ledger.py): the Idempotency-Key header, else the
# body's idempotencyKey; a replay answers 200 with the first commitment, another body 409. Without a key a
# retried create writes a second commitment.


class CustomerCommitmentsApi(CatalogApi):
    @extend_schema(
        operation_id="listCustomerCommitments",
        tags=["commitments"],
        parameters=paging_parameters(),
        responses={200: list_output("CommitmentList", CommitmentOutput, with_object=True), **ERRORS},
    )
    def get(self, request, id: str):
        customer = customer_or_404(request, id)
        return self.page(selectors.commitment_list(customer=customer), CommitmentOutput, with_object=True)

    @extend_schema(
        operation_id="createCustomerCommitment",
        tags=["commitments"],
        parameters=[OpenApiParameter("Idempotency-Key", str, location=OpenApiParameter.HEADER)],
        request=CommitmentInput,
        responses={201: CommitmentOutput, 200: CommitmentOutput, **ERRORS, **CONFLICT},
        description="A minimum spend over [termStart, termEnd) and the lower rates it buys: each written as the "
        "customer's negotiated rate over its plan price for the billing periods that start in the term. A rate "
        "that overlaps another of the customer's rates over that price refuses the whole commitment (400). "
        "Idempotent per customer by the Idempotency-Key header, else the body's idempotencyKey (both given must "
        "agree): a replay with the same body answers 200 with the first commitment (its rates written once), "
        "another body 409 IDEMPOTENCY_KEY_REUSED. Without a key every request creates a commitment.",
    )
    def post(self, request, id: str):
        customer = customer_or_404(request, id)
        data = self.body(CommitmentInput)
        rates = data.get("rates", [])
        header = request.headers.get("Idempotency-Key")
        if header and len(header) > 255:
            raise drf_serializers.ValidationError({"Idempotency-Key": ["At most 255 characters."]})
        try:
            key = idempotency_key_given(header=header, body=data.get("idempotencyKey"))
        except IdempotencyKeysDiffer as error:
            raise drf_serializers.ValidationError({"idempotencyKey": [str(error)]}) from None
        try:
            commitment, replayed = services.commitment_create(
                customer=customer,
                currency=data["currency"],
                amount=data["amount"],
                term_start=data["termStart"],
                term_end=data["termEnd"],
                metric_ids=[metric.pk for metric in data.get("metricIds", [])],
                description=data.get("description", ""),
                rates=[services.CommittedRate(plan_price=r["priceId"], unit_price=r["unitPrice"]) for r in rates],
                idempotency_key=key,
            )
        except services.IdempotencyConflict as exc:
            raise ApiError(str(exc), status_code=409, code="IDEMPOTENCY_KEY_REUSED") from None
        except CommittedRateRefused as exc:
            # Named as DRF names a list item's field (rates.0.priceId), like the serializer's own errors.
            raise drf_serializers.ValidationError({"rates": {exc.number - 1: {"priceId": [str(exc)]}}}) from None
        except InvalidAmount as exc:
            raise drf_serializers.ValidationError({"amount": [str(exc)]}) from None
        commitment = selectors.commitment_get(merchant_id=customer.merchant_id, commitment_id=commitment.pk)
        body = CommitmentOutput(commitment, context={"drawn": selectors.commitment_drawn(commitment=commitment)})
        return Response(body.data, status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED)


class CommitmentDetailApi(CatalogApi):
    @extend_schema(operation_id="getCommitment", tags=["commitments"], responses={200: CommitmentOutput, **ERRORS})
    def get(self, request, id: str):
        try:
            commitment = selectors.commitment_get(merchant_id=self.merchant.pk, commitment_id=id)
        except Commitment.DoesNotExist:
            raise Http404(f"No commitment with id {id!r}.") from None
        drawn = selectors.commitment_drawn(commitment=commitment)
        return Response(CommitmentOutput(commitment, context={"drawn": drawn}).data)
