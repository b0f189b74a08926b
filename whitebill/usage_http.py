"""Plain HTTP beside GraphQL where GraphQL costs too much: bulk usage ingestion and CSV downloads.

``POST /usage`` takes ``{"events": [...]}`` (up to 1,000) as JSON, validated by msgspec in one pass
(typed GraphQL input would cost about 32 µs per event before any work), and answers one result per
event, in order, exactly like the ``reportUsageEvents`` mutation, and means the same by a bad event: a body
of the wrong shape (not JSON, an unknown field, a value of the wrong type or outside the mutation's enums)
is refused whole with 400, INVALID_INPUT, the path of the first problem in ``field`` (``events[3].count``);
a batch of more than 1,000 events, or with an ``occurredAt`` without a time zone or outside the reporting
window, is refused whole with the mutation's typed error; an event of the right shape that cannot be
charged (a count of 0, an empty or control-character id, an unknown project or country) gets its own
REFUSED result.

``GET /reports/{report}.csv?month=YYYY-MM[&partnerId=ID]`` streams one of the partner's monthly
billing reports: ``wcc-deductions``, ``renewal-deductions``, ``plan-deductions``, ``package-deductions``.

Both take ``Authorization: Bearer <api key or session token>`` like /graphql.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from billing.accounts import statements
from billing.core.errors import BillingError, ErrorCode
from billing.documents import pdf
from billing.usage import usage_reports, whatsapp
from billing.usage.exact_amounts import format_fine
from models.tenancy import Branding, Partner
from schema.context import authenticate, bearer_token
from schema.ids import expect_id, from_global_id, project_db_id
from whitebill import cors
from whitebill.boundary import refusal

Category = Literal["MARKETING", "UTILITY", "AUTHENTICATION", "AUTHENTICATION_INTERNATIONAL", "SERVICE"]
WindowName = Literal["NONE", "CUSTOMER_SERVICE", "FREE_ENTRY"]


# The types of reportUsageEvents' UsageEventInput, no narrower: a value of the right type that is out of
# range (a count of 0, an empty event id, an unknown country) refuses that event alone, in the domain, as
# the mutation does; a body of the wrong shape is refused whole, as GraphQL refuses a mistyped variable.
GraphQLInt = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]


class EventBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True, gc=False):
    project_id: str
    event_id: str
    category: Category
    occurred_at: datetime  # one without a time zone refuses the batch, in the domain: INVALID_EVENT
    count: GraphQLInt = 1
    recipient: str | None = None
    country: str | None = None
    window: WindowName = "NONE"


class BatchBody(msgspec.Struct, forbid_unknown_fields=True):
    events: list[EventBody]  # more than 1,000 refuses the batch, in the domain: INVALID_INPUT on events


_decoder = msgspec.json.Decoder(BatchBody)


class ResultBody(msgspec.Struct, rename="camel", gc=False):
    event_id: str
    status: whatsapp.Status
    country: str | None
    partner_amount: str | None
    platform_amount: str | None
    currency: str | None
    reason: whatsapp.Reason | None
    message: str | None

    @classmethod
    def of(cls, result: whatsapp.UsageResult, amounts: dict[tuple[int, str], str]) -> ResultBody:
        """``amounts`` caches formatted amounts across a batch: they repeat."""
        currency = result.currency
        partner = platform = None
        if currency is not None:
            partner = amounts.get((result.partner_amount, currency))
            if partner is None:
                partner = amounts[(result.partner_amount, currency)] = format_fine(result.partner_amount, currency)
            platform = amounts.get((result.platform_amount, currency))
            if platform is None:
                platform = amounts[(result.platform_amount, currency)] = format_fine(result.platform_amount, currency)
        return cls(
            result.event_id,
            result.status,
            result.country,
            partner,
            platform,
            currency,
            result.reason,
            result.message,
        )


class Answer(msgspec.Struct):
    results: list[ResultBody]


_encoder = msgspec.json.Encoder()

_STATUS = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.RATE_LIMITED: 429,
}


def _domain_error(error: BillingError) -> Response:
    return refusal(_STATUS.get(error.code, 400), error.code, error.message, error.field)


def _path(message: str) -> str | None:
    """The input path msgspec names at the end of its message ("... - at `$.events[3].count`"), as the
    API names fields: ``events[3].count``."""
    _, found, path = message.rpartition(" - at `$.")
    return path.rstrip("`") if found else None


def _nul_at(batch: BatchBody) -> str | None:
    for index, event in enumerate(batch.events):
        for name, value in (
            ("projectId", event.project_id),
            ("eventId", event.event_id),
            ("recipient", event.recipient),
            ("country", event.country),
        ):
            if value is not None and "\x00" in value:
                return f"events[{index}].{name}"
    return None


async def report_usage(request: Request) -> Response:
    viewer = await authenticate(bearer_token(request.headers.get("authorization", "")))
    cors.note_caller(viewer)
    if viewer is None:
        return refusal(401, ErrorCode.UNAUTHENTICATED, "send Authorization: Bearer <api key>")
    try:
        body = await request.body()  # at most the server's /usage body limit
        batch = _decoder.decode(body)
    except msgspec.ValidationError as error:
        return refusal(400, ErrorCode.INVALID_INPUT, str(error), _path(str(error)))
    except msgspec.DecodeError as error:
        return refusal(400, ErrorCode.INVALID_INPUT, f"not JSON: {error}")
    if b"\\u0000" in body:  # JSON writes NUL so: look closer only then
        found = _nul_at(batch)
        if found is not None:  # as /graphql refuses it: no database stores it
            return refusal(400, ErrorCode.INVALID_INPUT, "Strings must not contain NUL characters", found)
    ids: dict[str, int] = {}
    projects = [project_db_id(e.project_id, ids) for e in batch.events]
    try:
        results = await whatsapp.report(viewer, batch.events, projects)
    except BillingError as error:
        return _domain_error(error)
    amounts: dict[tuple[int, str], str] = {}
    answer = Answer([ResultBody.of(r, amounts) for r in results])
    return Response(_encoder.encode(answer), media_type="application/json")


async def download_report(request: Request) -> Response:
    viewer = await authenticate(bearer_token(request.headers.get("authorization", "")))
    cors.note_caller(viewer)
    if viewer is None:
        return refusal(401, ErrorCode.UNAUTHENTICATED, "send Authorization: Bearer <api key or session token>")
    report = request.path_params["report"]
    month = request.query_params.get("month", "")
    try:
        partner_param = request.query_params.get("partnerId")
        if partner_param:
            kind, partner_id = from_global_id(partner_param, "partnerId")
            if kind != "Partner":
                raise BillingError(ErrorCode.NOT_FOUND, "partner not found", field="partnerId")
        elif viewer.partner_id is not None:
            partner_id = viewer.partner_id
        else:
            raise BillingError(ErrorCode.INVALID_INPUT, "name the partner", field="partnerId")
        checked, start, end = await usage_reports.check_download(viewer, partner_id, report, month)
    except BillingError as error:
        return _domain_error(error)
    filename = f"{report}-{start:%Y-%m}.csv"  # from what was checked, never the raw query
    return StreamingResponse(
        usage_reports.stream(report, checked, start, end),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


async def download_statement_pdf(request: Request) -> Response:
    """``GET /reports/statement.pdf?month=YYYY-MM[&partnerId=…][&currency=BRL][&language=pt-BR]``: the
    partner's monthly statement as a PDF, for the same callers as its CSV."""
    viewer = await authenticate(bearer_token(request.headers.get("authorization", "")))
    cors.note_caller(viewer)
    if viewer is None:
        return refusal(401, ErrorCode.UNAUTHENTICATED, "send Authorization: Bearer <api key or session token>")
    query = request.query_params
    try:
        partner_param = query.get("partnerId")
        partner_id = expect_id(partner_param, "Partner", "partnerId") if partner_param else viewer.partner_id
        if partner_id is None:
            raise BillingError(ErrorCode.INVALID_INPUT, "name the partner", field="partnerId")
        statement = await statements.monthly(
            viewer, partner_id=partner_id, month=query.get("month", ""), currency=query.get("currency")
        )
        language = pdf.check_language(query.get("language") or pdf.language_for(statement.currency))
    except BillingError as error:
        return _domain_error(error)
    brand = await Branding.get_or_none(partner_id=statement.partner_id)
    name = brand.display_name if brand else (await Partner.get(id=statement.partner_id)).name
    return Response(
        statements.statement_pdf(statement, name, language),
        media_type="application/pdf",
        headers={
            "content-disposition": f'attachment; filename="statement-{statement.month}.pdf"',
            "cache-control": "private, no-store",
        },
    )
