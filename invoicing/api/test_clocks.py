"""/v0/testClocks: create, list, read, advance (billing what the new time ended), delete."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response

from catalog.api.fields import check_merchant
from catalog.models import TestClock
from core.api.pagination import paginate
from core.api.serializers import list_output
from core.durations import add_duration, parse_duration
from invoicing import selectors, services

from . import serializers as s
from .common import CONFLICT, ERRORS, PAGING, BillingApi, conflict


def _clock_get(merchant, clock_id: str) -> TestClock:
    try:
        return selectors.test_clock_get(merchant=merchant, test_clock_id=clock_id)
    except TestClock.DoesNotExist:
        raise exceptions.NotFound("No such test clock.") from None


class TestClockCollectionApi(BillingApi):
    __test__ = False

    @extend_schema(
        operation_id="listTestClocks",
        tags=["testClocks"],
        parameters=[OpenApiParameter("merchantId", str), *PAGING],
        responses={200: list_output("TestClockList", s.TestClockOutput, with_object=False), **ERRORS},
    )
    def get(self, request):
        check_merchant(request, request.query_params.get("merchantId"))
        rows, pagination = paginate(selectors.test_clock_list(merchant=self.merchant), request)
        return Response({"data": s.TestClockOutput(rows, many=True).data, "pagination": pagination})

    @extend_schema(
        operation_id="createTestClock",
        tags=["testClocks"],
        request=s.TestClockCreateInput,
        responses={201: s.TestClockOutput, **ERRORS},
        description="currentTime defaults to now and may be in the past; at most METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS "
        "ahead of the real time (else 400 currentTime).",
    )
    def post(self, request):
        data = self.body(s.TestClockCreateInput)
        check_merchant(request, data.get("merchant_id"))
        now = timezone.now()
        try:
            clock = services.test_clock_create(
                merchant=self.merchant,
                current_time=data.get("current_time") or now,
                name=data.get("name") or "",
                description=data.get("description") or "",
                now=now,
            )
        except services.TimeBoundError as error:
            raise exceptions.ValidationError({"currentTime": [str(error)]}) from None
        return Response(s.TestClockOutput(clock).data, status=status.HTTP_201_CREATED)


class TestClockDetailApi(BillingApi):
    __test__ = False

    @extend_schema(operation_id="getTestClock", tags=["testClocks"], responses={200: s.TestClockOutput, **ERRORS})
    def get(self, request, id: str):
        return Response(s.TestClockOutput(_clock_get(self.merchant, id)).data)

    @extend_schema(
        operation_id="advanceTestClock",
        tags=["testClocks"],
        request=s.TestClockAdvanceInput,
        responses={200: s.TestClockOutput, **ERRORS},
        description="Moves the clock forward (`currentTime`, or `advanceBy` an ISO 8601 duration such as P1M, P7D, "
        "PT2H, P1Y2M3DT4H5M6S; years and months are calendar months, day clamped) and bills the clock's "
        "subscriptions synchronously with the beat's code: every period ended by the new time is invoiced and "
        "drafts whose grace period ended are issued. At most METERLINE_INLINE_CATCHUP_PERIODS periods per subscription "
        "are invoiced in the request, the rest by a background billing run (extension `catchUp`). A time that does "
        "not move forward, or lies more than METERLINE_TEST_CLOCK_MAX_AHEAD_DAYS ahead of the real time → 400.",
    )
    def patch(self, request, id: str):
        clock = _clock_get(self.merchant, id)
        data = self.body(s.TestClockAdvanceInput)
        if "advance_by" in data:
            try:
                to = add_duration(clock.current_time, parse_duration(data["advance_by"]))
            except (ValueError, OverflowError) as error:
                raise exceptions.ValidationError({"advanceBy": [str(error)]}) from None
            field = "advanceBy"
        else:
            to, field = data["current_time"], "currentTime"
        try:
            run = services.test_clock_advance(test_clock=clock, to=to, now=timezone.now())
        except services.TimeBoundError as error:
            raise exceptions.ValidationError({field: [str(error)]}) from None
        except services.TestClockError as error:
            if error.conflict:
                raise conflict(str(error), "TEST_CLOCK_DELETED") from None
            raise exceptions.ValidationError({field: [str(error)]}) from None
        clock = _clock_get(self.merchant, id)
        return Response(s.TestClockOutput(clock, context={"catch_up": run.catch_up}).data)

    @extend_schema(
        operation_id="deleteTestClock",
        tags=["testClocks"],
        responses={200: s.TestClockOutput, **ERRORS, **CONFLICT},
        description="Soft delete: answers the clock with deletedAt. 409 TEST_CLOCK_IN_USE while a subscription on "
        "it is not terminated. A deleted clock is then 404 and cannot take new subscriptions.",
    )
    def delete(self, request, id: str):
        clock = _clock_get(self.merchant, id)
        try:
            clock = services.test_clock_delete(test_clock=clock, now=timezone.now())
        except services.TestClockError as error:
            raise conflict(str(error), "TEST_CLOCK_IN_USE") from None
        return Response(s.TestClockOutput(clock).data)
