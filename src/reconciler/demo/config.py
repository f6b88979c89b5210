"""What the demo day looks like: its size, its calendar and how often each thing goes wrong.

The defaults paint the September 2024 CASN registration peak: one national portal selling
e-meterai at Rp 10,000 duty plus Rp 2,500 fee, a morning rush that the stamp issuer could
not carry, payment webhooks lost under the load, and people paying twice because the page
still said "awaiting payment". The stamp issuer and the payment provider are the HTTP
simulators; their faults are set here, and so is how patient the jobs calling them are.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta, timezone

from reconciler.providers.config import MINUTES_PER_DAY

WIB = timezone(timedelta(hours=7), "WIB")
"""Western Indonesian Time, where the registration portal and its buyers live."""

UNIT_PRICE = 10_000
UNIT_FEE = 2_500


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Everything that shapes one simulated day; the same config and seed give the same day."""

    orders: int = 20_000
    seed: int = 20_240_904
    day: date = date(2024, 9, 4)
    opens_at: time = time(6, 0)
    closes_at: time = time(23, 0)

    # The engine's clock: one ClockTicked per tick; facts go to the engine in batches of
    # this many seconds (deadlines are minutes, so a few seconds of batching change nothing).
    tick_seconds: int = 1
    batch_seconds: int = 10
    # Long enough for every default deadline to fall due after the last answer:
    # payment grace 30 min, three issuance attempts, five refund attempts 10 min apart.
    quiet_period: timedelta = timedelta(hours=3)

    # The issuer outage at the peak: the portal issues nothing, and the stamp issuer answers
    # every request 503 (whole minutes: the simulator's window has minute steps).
    outage_start: time = time(9, 50)
    outage_duration: timedelta = timedelta(hours=2)

    # What buyers do.
    abandon_rate: float = 0.08
    cancel_unpaid_rate: float = 0.03
    cancel_after_payment_rate: float = 0.15
    double_debit_rate: float = 0.01
    double_debit_when_unnoticed_rate: float = 0.25
    late_payment_rate: float = 0.01
    amount_mismatch_rate: float = 0.002
    orphan_debit_rate: float = 0.002
    order_event_late_rate: float = 0.003

    # What the payment provider reports.
    webhook_loss_rate: float = 0.03
    webhook_loss_rate_in_outage: float = 0.35
    inquiry_rate: float = 0.3
    settlement_every: timedelta = timedelta(hours=4)
    settlement_lag: timedelta = timedelta(minutes=90)

    # What the portal does.
    portal_partial_delivery_rate: float = 0.03
    portal_failure_report_rate: float = 0.5
    portal_backlog_rate: float = 0.2
    duplicate_serial_rate: float = 0.0005
    delivered_unpaid_rate: float = 0.001

    # The stamp issuer the jobs call (`reconciler simulate issuer`), besides its outage.
    issuer_error_rate: float = 0.02
    """Requests answered 503 once; the same request again may pass."""
    issuer_quota_rate: float = 0.03
    """Issues refused QUOTA_EXCEEDED, retryable: the engine tries its next attempt."""
    issuer_reject_rate: float = 0.005
    """Issues refused ORDER_NOT_ELIGIBLE for good: the engine refunds."""
    issuer_partial_rate: float = 0.02

    # The payment provider the jobs call (`reconciler simulate psp`).
    refund_not_supported_rate: float = 0.03
    """Payments whose payer bank takes no refunds (the PSP decides by payment id)."""
    refund_blackout_start: time = time(23, 0)
    refund_blackout_duration: timedelta = timedelta(minutes=90)
    """The PSP's nightly refund blackout, 503 with Retry-After; zero for none."""
    psp_error_rate: float = 0.05
    psp_burst: timedelta = timedelta(minutes=2)
    """The PSP fails in bursts: `psp_error_rate` of these stretches answer every request 503."""
    psp_drop_after_pay_rate: float = 0.02
    """Refunds paid whose answer is lost (502): the job asks again and is told, not paid twice."""

    # The remediation jobs between the engine and the providers. Their retries wait in
    # simulated time; a result reaches the engine `result_lag` after the job has it (the
    # low end is also how far the engine may run ahead of the jobs).
    issue_job_attempts: int = 1
    """Calls per issuance command: the engine's next attempt is its retry, at once."""
    refund_job_attempts: int = 3
    """Calls per refund command: the engine retries a refund only minutes later."""
    job_backoff_base: timedelta = timedelta(seconds=2)
    job_backoff_cap: timedelta = timedelta(seconds=30)
    job_deadline: timedelta = timedelta(minutes=1)
    result_lag: tuple[timedelta, timedelta] = (timedelta(seconds=30), timedelta(seconds=90))
    job_restart_rate: float = 0.02
    """Jobs that die after the provider answered and before the result went out."""
    job_restart_after: tuple[timedelta, timedelta] = (timedelta(minutes=3), timedelta(minutes=10))
    """How long such a job takes to come back and ask the provider again (same key)."""

    def __post_init__(self) -> None:
        """Refuse a config that cannot describe a day."""
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name.endswith("_rate") and not 0.0 <= value <= 1.0:
                msg = f"{field.name} must lie in [0, 1], got {value}"
                raise ValueError(msg)
        if self.orders < 0:
            msg = f"orders must not be negative, got {self.orders}"
            raise ValueError(msg)
        if self.tick_seconds < 1 or self.batch_seconds % self.tick_seconds != 0:
            msg = "tick_seconds must be >= 1 and batch_seconds a positive multiple of it"
            raise ValueError(msg)
        if self.batch_seconds < self.tick_seconds:
            msg = "batch_seconds must hold at least one tick"
            raise ValueError(msg)
        if self.closes_at <= self.opens_at:
            msg = "the portal must close after it opens"
            raise ValueError(msg)
        if self.settlement_every <= timedelta(0):
            msg = "settlement_every must be positive"
            raise ValueError(msg)
        self._check_jobs()
        for name in ("outage", "refund_blackout"):
            _check_window(name, getattr(self, f"{name}_start"), getattr(self, f"{name}_duration"))

    def _check_jobs(self) -> None:
        if min(self.issue_job_attempts, self.refund_job_attempts) < 1:
            msg = "issue_job_attempts and refund_job_attempts must be >= 1"
            raise ValueError(msg)
        if self.job_deadline <= timedelta(0):
            msg = "job_deadline must be positive"
            raise ValueError(msg)
        for name in ("result_lag", "job_restart_after"):
            low, high = getattr(self, name)
            if not timedelta(0) <= low <= high:
                msg = f"{name} must be (low, high) with 0 <= low <= high"
                raise ValueError(msg)

    def at(self, clock: time) -> datetime:
        """The moment of the demo day at this wall-clock time, in WIB."""
        return datetime.combine(self.day, clock, tzinfo=WIB)

    @property
    def opening(self) -> datetime:
        """When the portal starts selling, and the engine's first tick."""
        return self.at(self.opens_at)

    @property
    def closing(self) -> datetime:
        """When the last order may be placed."""
        return self.at(self.closes_at)

    @property
    def outage(self) -> tuple[datetime, datetime]:
        """The issuer outage as [start, end)."""
        start = self.at(self.outage_start)
        return start, start + self.outage_duration

    def in_outage(self, moment: datetime) -> bool:
        """Whether the issuer is down at this moment."""
        start, end = self.outage
        return start <= moment < end


def _check_window(name: str, start: time, duration: timedelta) -> None:
    """A provider window opens on a whole minute and lasts whole minutes, up to a day."""
    minutes, rest = divmod(duration, timedelta(minutes=1))
    if start.second or start.microsecond or rest or not 0 <= minutes <= MINUTES_PER_DAY:
        msg = f"{name} must start on a whole minute and last 0 to {MINUTES_PER_DAY} whole minutes"
        raise ValueError(msg)
