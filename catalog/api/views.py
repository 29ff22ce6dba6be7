"""Catalog endpoints under /v0, wire-compatible with the Paygentic client.

Each view parses with an input serializer, calls a service or selector, and answers with an output
serializer. Objects of another merchant are "not found" (404); a body or query naming another
merchant is refused (403).
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import selectors, services
from core.api.fields import DecimalJSONParser, refuse_null_characters, require_query, wire_field_names
from core.api.pagination import MAX_OFFSET, MAX_PAGE_SIZE, paginate
from core.api.serializers import ErrorOutput, list_output

from . import schema as _schema_extensions  # noqa: F401  (registers the OpenAPI extensions)
from . import serializers as s
from .auth import request_merchant
from .fields import check_merchant

ERRORS = {code: ErrorOutput for code in (400, 401, 403, 404)}
CONFLICT = {409: ErrorOutput}
PAGING = [
    OpenApiParameter(
        "limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}, description="Page size (default 10)."
    ),
    OpenApiParameter(
        "offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}, description="Rows to skip (default 0)."
    ),
]
NO_CONTENT = {204: OpenApiResponse(description="Deleted.")}

PRICE_FIELDS = {
    "billable_metric": "billableMetricId",
    "fee": "feeId",
    "unit_price": "properties.unitPrice",
    "package_size": "properties.packageSize",
    "package_rounding": "properties.packageRounding",
    "percentage_rate": "properties.percentage",
    "min_charge_per_period": "properties.minCharge",
    "max_charge_per_period": "properties.maxCharge",
    "fixed_fee_per_event": "properties.fixedFeePerEvent",
    "min_charge_per_event": "properties.minChargePerEvent",
    "max_charge_per_event": "properties.maxChargePerEvent",
    "dynamic_mode": "properties.mode",
    "event_price_property": "properties.eventPriceProperty",
    "min_unit_price": "properties.minPrice",
    "max_unit_price": "properties.maxPrice",
    "tiers": "properties.tiers",
    "rates": "properties.rates",
    "tax_supply_scope": "tax.supplyScope",
}
METRIC_FIELDS = {"product": "productId"}
PLAN_FIELDS = {"product": "productId"}
CUSTOMER_FIELDS = {
    "address_line1": "consumer.address.line1",
    "address_line2": "consumer.address.line2",
    "city": "consumer.address.city",
    "state": "consumer.address.state",
    "country": "consumer.address.country",
    "postal_code": "consumer.address.zipCode",
    "name": "consumer.name",
    "email": "consumer.email",
    "phone": "consumer.phone",
    "tax_rate": "taxRates.default",
    "billing_emails": "billingEmails",
}


class CatalogApi(APIView):
    parser_classes = [DecimalJSONParser]

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication first: 401 before anything else
        if hasattr(self, request.method.lower()) and request.method.lower() in self.http_method_names:
            refuse_null_characters(request, kwargs)  # (a method no view answers gets its 405 first)

    def body(self, serializer_class, **context) -> dict:
        serializer = serializer_class(data=self.request.data, context={"request": self.request, **context})
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    @property
    def merchant(self):
        return request_merchant(self.request)

    def page(self, queryset, output, *, with_object: bool, context: dict | None = None) -> Response:
        rows, pagination = paginate(queryset, self.request)
        body = {"data": output(rows, many=True, context=context or {}).data, "pagination": pagination}
        return Response({"object": "list", **body} if with_object else body)


# Products


class ProductCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listProducts",
        tags=["products"],
        parameters=[OpenApiParameter("merchantId", str), *PAGING],
        responses={200: list_output("ProductList", s.ProductOutput, with_object=False), **ERRORS},
    )
    def get(self, request):
        check_merchant(request, request.query_params.get("merchantId"))
        return self.page(selectors.product_list(merchant=self.merchant), s.ProductOutput, with_object=False)

    @extend_schema(
        operation_id="createProduct",
        tags=["products"],
        request=s.ProductCreateInput,
        responses={201: s.ProductOutput, **ERRORS},
    )
    def post(self, request):
        data = self.body(s.ProductCreateInput)
        check_merchant(request, data.pop("merchant_id"))
        with wire_field_names():
            product = services.product_create(merchant=self.merchant, **data)
        return Response(s.ProductOutput(product).data, status=status.HTTP_201_CREATED)


class ProductDetailApi(CatalogApi):
    @extend_schema(operation_id="getProduct", tags=["products"], responses={200: s.ProductOutput, **ERRORS})
    def get(self, request, id: str):
        return Response(s.ProductOutput(selectors.product_get(merchant=self.merchant, product_id=id)).data)

    @extend_schema(
        operation_id="updateProduct",
        tags=["products"],
        request=s.ProductUpdateInput,
        responses={200: s.ProductOutput, **ERRORS},
    )
    def patch(self, request, id: str):
        product = selectors.product_get(merchant=self.merchant, product_id=id)
        data = self.body(s.ProductUpdateInput)
        with wire_field_names():
            product = services.product_update(product=product, changes=data)
        return Response(s.ProductOutput(product).data)

    @extend_schema(operation_id="deleteProduct", tags=["products"], responses={**NO_CONTENT, **ERRORS, **CONFLICT})
    def delete(self, request, id: str):
        services.product_delete(product=selectors.product_get(merchant=self.merchant, product_id=id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Billable metrics


class BillableMetricCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listBillableMetrics",
        tags=["billableMetrics"],
        parameters=[
            OpenApiParameter("merchantId", str, required=True),
            OpenApiParameter("productId", str),
            OpenApiParameter("itemId", str),
            *PAGING,
        ],
        responses={200: list_output("BillableMetricList", s.BillableMetricOutput, with_object=True), **ERRORS},
    )
    def get(self, request):
        check_merchant(request, require_query(request, "merchantId"))
        metrics = selectors.billable_metric_list(
            merchant=self.merchant,
            product_id=request.query_params.get("productId"),
            item_id=request.query_params.get("itemId"),
        )
        return self.page(metrics, s.BillableMetricOutput, with_object=True)

    @extend_schema(
        operation_id="createBillableMetric",
        tags=["billableMetrics"],
        request=s.BillableMetricCreateInput,
        responses={201: s.BillableMetricOutput, **ERRORS},
    )
    def post(self, request):
        data = self.body(s.BillableMetricCreateInput)
        check_merchant(request, data.pop("merchant_id"))
        with wire_field_names(METRIC_FIELDS):
            metric = services.billable_metric_create(merchant=self.merchant, **data)
        return Response(s.BillableMetricOutput(metric).data, status=status.HTTP_201_CREATED)


class BillableMetricDetailApi(CatalogApi):
    def get_object(self, id: str):
        return selectors.billable_metric_get(merchant=self.merchant, metric_id=id)

    @extend_schema(
        operation_id="getBillableMetric", tags=["billableMetrics"], responses={200: s.BillableMetricOutput, **ERRORS}
    )
    def get(self, request, id: str):
        return Response(s.BillableMetricOutput(self.get_object(id)).data)

    @extend_schema(
        operation_id="updateBillableMetric",
        tags=["billableMetrics"],
        request=s.BillableMetricUpdateInput,
        responses={200: s.BillableMetricOutput, **ERRORS, **CONFLICT},
    )
    def patch(self, request, id: str):
        metric = self.get_object(id)
        data = self.body(s.BillableMetricUpdateInput)
        with wire_field_names(METRIC_FIELDS):
            metric = services.billable_metric_update(metric=metric, changes=data)
        return Response(s.BillableMetricOutput(metric).data)

    @extend_schema(
        operation_id="deleteBillableMetric",
        tags=["billableMetrics"],
        responses={**NO_CONTENT, **ERRORS, **CONFLICT},
    )
    def delete(self, request, id: str):
        services.billable_metric_delete(metric=self.get_object(id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Fees


class FeeCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listFees",
        tags=["fees"],
        parameters=[
            OpenApiParameter("merchantId", str, required=True),
            OpenApiParameter("productId", str),
            OpenApiParameter("itemId", str),
            *PAGING,
        ],
        responses={200: list_output("FeeList", s.FeeOutput, with_object=True), **ERRORS},
    )
    def get(self, request):
        check_merchant(request, require_query(request, "merchantId"))
        fees = selectors.fee_list(
            merchant=self.merchant,
            product_id=request.query_params.get("productId"),
            item_id=request.query_params.get("itemId"),
        )
        return self.page(fees, s.FeeOutput, with_object=True)

    @extend_schema(
        operation_id="createFee", tags=["fees"], request=s.FeeCreateInput, responses={201: s.FeeOutput, **ERRORS}
    )
    def post(self, request):
        data = self.body(s.FeeCreateInput)
        check_merchant(request, data.pop("merchant_id"))
        with wire_field_names(METRIC_FIELDS):
            fee = services.fee_create(merchant=self.merchant, **data)
        return Response(s.FeeOutput(fee).data, status=status.HTTP_201_CREATED)


class FeeDetailApi(CatalogApi):
    def get_object(self, id: str):
        return selectors.fee_get(merchant=self.merchant, fee_id=id)

    @extend_schema(operation_id="getFee", tags=["fees"], responses={200: s.FeeOutput, **ERRORS})
    def get(self, request, id: str):
        return Response(s.FeeOutput(self.get_object(id)).data)

    @extend_schema(
        operation_id="updateFee",
        tags=["fees"],
        request=s.FeeUpdateInput,
        responses={200: s.FeeOutput, **ERRORS, **CONFLICT},
    )
    def patch(self, request, id: str):
        fee = self.get_object(id)
        data = self.body(s.FeeUpdateInput)
        with wire_field_names():
            fee = services.fee_update(fee=fee, changes=data)
        return Response(s.FeeOutput(fee).data)

    @extend_schema(operation_id="deleteFee", tags=["fees"], responses={**NO_CONTENT, **ERRORS, **CONFLICT})
    def delete(self, request, id: str):
        services.fee_delete(fee=self.get_object(id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Prices


class PriceCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listPrices",
        tags=["prices"],
        parameters=[OpenApiParameter("merchantId", str), OpenApiParameter("billableMetricId", str), *PAGING],
        responses={200: list_output("PriceList", s.PriceOutput, with_object=False), **ERRORS},
    )
    def get(self, request):
        check_merchant(request, request.query_params.get("merchantId"))
        prices = selectors.price_list(
            merchant=self.merchant, billable_metric_id=request.query_params.get("billableMetricId")
        )
        return self.page(prices, s.PriceOutput, with_object=False)

    @extend_schema(
        operation_id="createPrice",
        tags=["prices"],
        request=s.PriceCreateInput,
        responses={201: s.PriceOutput, **ERRORS},
    )
    def post(self, request):
        data = self.body(s.PriceCreateInput)
        with wire_field_names(PRICE_FIELDS):
            price = services.price_create(merchant=self.merchant, **data)
        price = selectors.price_get(merchant=self.merchant, price_id=price.id)
        return Response(s.PriceOutput(price).data, status=status.HTTP_201_CREATED)


class PriceDetailApi(CatalogApi):
    def get_object(self, id: str):
        return selectors.price_get(merchant=self.merchant, price_id=id)

    @extend_schema(operation_id="getPrice", tags=["prices"], responses={200: s.PriceOutput, **ERRORS})
    def get(self, request, id: str):
        return Response(s.PriceOutput(self.get_object(id)).data)

    @extend_schema(
        operation_id="updatePrice",
        tags=["prices"],
        request=s.PriceUpdateInput,
        responses={200: s.PriceOutput, **ERRORS, **CONFLICT},
        description="Changing what a price charges while subscriptions bill it answers 409 PRICE_IN_USE; "
        "display name, display group and rate type can always change.",
    )
    def patch(self, request, id: str):
        price = self.get_object(id)
        data = self.body(s.PriceUpdateInput, price=price)
        with wire_field_names(PRICE_FIELDS):
            services.price_update(price=price, changes=data["fields"], tiers=data["tiers"], rates=data["rates"])
        return Response(s.PriceOutput(self.get_object(id)).data)

    @extend_schema(operation_id="deletePrice", tags=["prices"], responses={**NO_CONTENT, **ERRORS, **CONFLICT})
    def delete(self, request, id: str):
        services.price_delete(price=self.get_object(id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# Plans


class PlanCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listPlans",
        tags=["plans"],
        parameters=[OpenApiParameter("merchantId", str), OpenApiParameter("productId", str), *PAGING],
        responses={200: list_output("PlanList", s.PlanOutput, with_object=False), **ERRORS},
    )
    def get(self, request):
        check_merchant(request, request.query_params.get("merchantId"))
        plans = selectors.plan_list(merchant=self.merchant, product_id=request.query_params.get("productId"))
        return self.page(plans, s.PlanOutput, with_object=False)

    @extend_schema(
        operation_id="createPlan",
        tags=["plans"],
        request=s.PlanCreateInput,
        responses={201: s.PlanOutput, **ERRORS, **CONFLICT},
        description="Attaches the listed (unattached) prices to the new plan. A price of another plan is a 409.",
    )
    def post(self, request):
        data = self.body(s.PlanCreateInput)
        fields = data["fields"]
        check_merchant(request, fields.pop("merchant_id"))
        with wire_field_names(PLAN_FIELDS):
            plan = services.plan_create(merchant=self.merchant, lines=data["lines"], now=timezone.now(), **fields)
        plan = selectors.plan_get(merchant=self.merchant, plan_id=plan.id)
        return Response(s.PlanOutput(plan).data, status=status.HTTP_201_CREATED)


class PlanAvailableApi(CatalogApi):
    @extend_schema(
        operation_id="listAvailablePlans",
        tags=["plans"],
        parameters=[
            OpenApiParameter("customerId", str, required=True),
            OpenApiParameter("productId", str),
            OpenApiParameter("search", str),
            *PAGING,
        ],
        responses={200: list_output("AvailablePlanList", s.PlanOutput, with_object=False), **ERRORS},
    )
    def get(self, request):
        customer = selectors.customer_get(merchant=self.merchant, customer_id=require_query(request, "customerId"))
        plans = selectors.plan_list_available(
            merchant=self.merchant,
            customer=customer,
            product_id=request.query_params.get("productId"),
            search=request.query_params.get("search"),
        )
        return self.page(plans, s.PlanOutput, with_object=False)


class PlanDetailApi(CatalogApi):
    def get_object(self, id: str):
        return selectors.plan_get(merchant=self.merchant, plan_id=id)

    @extend_schema(operation_id="getPlan", tags=["plans"], responses={200: s.PlanOutput, **ERRORS})
    def get(self, request, id: str):
        return Response(s.PlanOutput(self.get_object(id)).data)

    @extend_schema(
        operation_id="updatePlan",
        tags=["plans"],
        request=s.PlanUpdateInput,
        responses={200: s.PlanOutput, **ERRORS, **CONFLICT},
        description="`prices` replaces the plan's set of prices. While subscriptions bill the plan, its cadence, "
        "anchor and prices cannot change (409 PLAN_IN_USE).",
    )
    def patch(self, request, id: str):
        plan = self.get_object(id)
        data = self.body(s.PlanUpdateInput)
        with wire_field_names(PLAN_FIELDS):
            services.plan_update(plan=plan, changes=data["fields"], lines=data["lines"], now=timezone.now())
        return Response(s.PlanOutput(self.get_object(id)).data)


# Plan versions


def _created_by(request) -> str:
    key = getattr(request, "auth", None)
    return f"API key {key.pk}" if getattr(key, "pk", None) else ""


class PlanVersionCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listPlanVersions",
        tags=["plans"],
        parameters=PAGING,
        responses={
            200: list_output("ListPlanVersionsResponse", s.PlanVersionSummaryOutput, with_object=True),
            **ERRORS,
        },
        description="The plan's versions, newest first.",
    )
    def get(self, request, id: str):
        plan = selectors.plan_get(merchant=self.merchant, plan_id=id)
        versions = selectors.plan_version_list(plan=plan).select_related("plan")
        return self.page(versions, s.PlanVersionSummaryOutput, with_object=True)

    @extend_schema(
        operation_id="mintPlanVersion",
        tags=["plans"],
        request=s.PlanVersionMintInput,
        responses={201: s.PlanVersionOutput, **ERRORS, **CONFLICT},
        description="Mint the next version from the complete price set it holds and make it the default. Keys "
        "decide: a key on both sides with another price replaces that line, a new key adds one, an omitted key "
        "removes it. A basedOnVersionId that is no longer the default is a 409 VERSION_STALE. Floating "
        "subscriptions bill from it from their next period.",
    )
    def post(self, request, id: str):
        plan = selectors.plan_get(merchant=self.merchant, plan_id=id)
        data = self.body(s.PlanVersionMintInput)
        with wire_field_names():
            version = services.plan_version_mint(
                plan=plan,
                lines=data["prices"],
                based_on_version_id=data.get("based_on_version_id"),
                created_by=_created_by(request),
                now=timezone.now(),
            )
        version = selectors.plan_version_get(plan=plan, number=version.number)
        return Response(s.PlanVersionOutput(version).data, status=status.HTTP_201_CREATED)


class PlanVersionDetailApi(CatalogApi):
    def get_object(self, id: str, version_number: int):
        plan = selectors.plan_get(merchant=self.merchant, plan_id=id)
        return selectors.plan_version_get(plan=plan, number=version_number)

    @extend_schema(operation_id="getPlanVersion", tags=["plans"], responses={200: s.PlanVersionOutput, **ERRORS})
    def get(self, request, id: str, version_number: int):
        return Response(s.PlanVersionOutput(self.get_object(id, version_number)).data)

    @extend_schema(
        operation_id="transitionPlanVersion",
        tags=["plans"],
        request=s.PlanVersionTransitionInput,
        responses={200: s.PlanVersionOutput, **ERRORS, **CONFLICT},
        description="`default: true` points the plan's default at this version (a roll-back or forward); "
        "idempotent. Floating subscriptions bill from it from their next period.",
    )
    def patch(self, request, id: str, version_number: int):
        version = self.get_object(id, version_number)
        self.body(s.PlanVersionTransitionInput)
        services.plan_version_make_default(version=version, now=timezone.now())
        return Response(s.PlanVersionOutput(self.get_object(id, version_number)).data)


# Customers


class CustomerCollectionApi(CatalogApi):
    @extend_schema(
        operation_id="listCustomers",
        tags=["customers"],
        parameters=[
            OpenApiParameter("organizationId", str, required=True, description="The merchant's id."),
            OpenApiParameter("name", {"type": "string", "minLength": 3}, description="Substring."),
            OpenApiParameter("email", {"type": "string", "minLength": 3}, description="Substring."),
            OpenApiParameter("externalId", str, description="Exact match."),
            *PAGING,
        ],
        responses={200: list_output("CustomerList", s.CustomerOutput, with_object=True), **ERRORS},
    )
    def get(self, request):
        check_merchant(request, require_query(request, "organizationId"), "organizationId")
        filters = {}
        for key in ("name", "email"):
            value = request.query_params.get(key)
            if value is not None and len(value) < 3:
                raise serializers.ValidationError({key: ["Search with at least 3 characters."]})
            filters[key] = value
        customers = selectors.customer_list(
            merchant=self.merchant, external_id=request.query_params.get("externalId"), **filters
        )
        return self.page(customers, s.CustomerOutput, with_object=True)

    @extend_schema(
        operation_id="createCustomer",
        tags=["customers"],
        request=s.CustomerCreateInput,
        responses={
            201: OpenApiResponse(s.CustomerCreatedOutput, description="Created."),
            200: OpenApiResponse(s.CustomerCreatedOutput, description="The customer already exists."),
            **ERRORS,
            **CONFLICT,
        },
        description="Answers 200 with the existing customer when the merchant already has one with the same "
        "externalId, or (without externalId) the same consumer e-mail; the stored customer is not changed.",
    )
    def post(self, request):
        data = self.body(s.CustomerCreateInput)
        check_merchant(request, data.pop("merchant_id"))
        existing = data.pop("consumer_id", None)
        if existing is not None:
            return self._existing(existing, data)
        with wire_field_names(CUSTOMER_FIELDS):
            customer, created = services.customer_create(merchant=self.merchant, **s.flatten_customer(data))
        return Response(
            s.CustomerCreatedOutput(customer).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    def _existing(self, customer, data) -> Response:
        """``consumerId`` names an existing customer (a consumer is its customer here)."""
        external_id = data.get("external_id")
        if external_id and customer.external_id and external_id != customer.external_id:
            raise serializers.ValidationError(
                {"externalId": [f"The consumer {customer.id} already has the external id {customer.external_id}."]}
            )
        return Response(s.CustomerCreatedOutput(customer).data, status=status.HTTP_200_OK)


class CustomerDetailApi(CatalogApi):
    def get_object(self, id: str):
        return selectors.customer_get(merchant=self.merchant, customer_id=id)

    @extend_schema(operation_id="getCustomer", tags=["customers"], responses={200: s.CustomerOutput, **ERRORS})
    def get(self, request, id: str):
        return Response(s.CustomerOutput(self.get_object(id)).data)

    @extend_schema(
        operation_id="updateCustomer",
        tags=["customers"],
        request=s.CustomerUpdateInput,
        responses={200: s.CustomerOutput, **ERRORS, **CONFLICT},
    )
    def patch(self, request, id: str):
        customer = self.get_object(id)
        data = self.body(s.CustomerUpdateInput)
        with wire_field_names(CUSTOMER_FIELDS):
            customer = services.customer_update(customer=customer, changes=data)
        return Response(s.CustomerOutput(customer).data)

    @extend_schema(operation_id="deleteCustomer", tags=["customers"], responses={**NO_CONTENT, **ERRORS, **CONFLICT})
    def delete(self, request, id: str):
        services.customer_delete(customer=self.get_object(id))
        return Response(status=status.HTTP_204_NO_CONTENT)
