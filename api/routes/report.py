"""`GET /pilots/{pilot}/report` (JSON) and `GET /pilots/{pilot}/report.html` (shareable)."""

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

from api.access import PublicPilotDep, PublicReadAccess
from api.deps import ReportsDep, TimeRangeDep
from api.problems import BUSY_503, responses
from api.schemas import ReportOut

router = APIRouter(tags=["report"])

ERRORS = responses(400, 401, 404, 422, 503, _404="unknown pilot", _503=BUSY_503)


@router.get("/pilots/{pilot}/report", responses=ERRORS, response_model=ReportOut)
def get_report(
    reader: PublicReadAccess, pilot: PublicPilotDep, window: TimeRangeDep, reports: ReportsDep
) -> Response:
    """The pilot's results for a period (default: the last 24 hours).

    Without a token: a published pilot, within its published period.

    Per-sensor summary, completeness and uptime per device, gaps, packet delivery ratio,
    latency, battery, data-quality flags, threshold episodes and WHO guideline exceedance days.
    """
    reader.window(pilot, window.start_ns, window.end_ns)
    built = reports.get(pilot, window.start_ns, window.end_ns, public=reader.anonymous)
    return Response(built.json, media_type="application/json")


@router.get("/pilots/{pilot}/report.html", responses=ERRORS, response_class=HTMLResponse)
def get_report_html(
    reader: PublicReadAccess, pilot: PublicPilotDep, window: TimeRangeDep, reports: ReportsDep
) -> HTMLResponse:
    """The same report as one self-contained HTML page with plots, to save and share."""
    reader.window(pilot, window.start_ns, window.end_ns)
    built = reports.get(pilot, window.start_ns, window.end_ns, public=reader.anonymous)
    return HTMLResponse(built.html)
