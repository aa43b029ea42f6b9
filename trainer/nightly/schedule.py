"""`trainer schedule`: run the nightly job on a cron schedule until SIGTERM (or Ctrl-C).

APScheduler with a cron trigger in the configured time zone (default 03:00), a misfire grace time,
coalesced missed runs and one run at a time. ``trainer.schedule_cron`` is a standard five-field crontab, or six
fields with the second first (``30 0 3 * * *``). The next run time is logged once the scheduler has started (a job
has none before) and after every run. Every run takes the same Redis lock as `trainer nightly`, so
several schedulers (one per replica) still train once. While an operator has paused the schedule (the
dashboard's pause flag in Redis) its runs are skipped. SIGTERM stops cleanly: no new run starts, a running
one stops at its next training step without promoting anything, and its lock is released.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, EVENT_SCHEDULER_STARTED
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from brain.operator_records import SchedulePause
from brain.settings import Settings
from trainer.errors import ConfigError

log = logging.getLogger("trainer.schedule")


def cron_trigger(settings: Settings) -> CronTrigger:
    try:
        zone = ZoneInfo(settings.trainer.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"trainer.timezone {settings.trainer.timezone!r} is not a known time zone") from None
    fields = settings.trainer.schedule_cron.split()
    try:
        if len(fields) == 6:  # seconds first, as in Quartz; the order of from_crontab's fields after it
            second, minute, hour, day, month, day_of_week = fields
            return CronTrigger(
                second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, timezone=zone
            )
        return CronTrigger.from_crontab(settings.trainer.schedule_cron, timezone=zone)
    except ValueError as error:
        raise ConfigError(f"trainer.schedule_cron {settings.trainer.schedule_cron!r} is not valid: {error}") from None


def paused(settings: Settings) -> SchedulePause | None:
    """The operator's pause of the schedule (set from the dashboard), if there is one."""
    from trainer.nightly.link import RedisLink

    with RedisLink.from_settings(settings) as link:
        return link.call(link.store.dashboard.schedule_pause())


def nightly_job(settings: Settings, stop: threading.Event) -> None:
    from trainer.core.loop import RunCancelled
    from trainer.nightly.lock import LockHeldError
    from trainer.nightly.run import run_nightly

    try:
        pause = paused(settings)
        if pause is not None:
            log.warning(
                "skipped: the schedule was paused at %s%s", pause.at, f" ({pause.reason})" if pause.reason else ""
            )
            return
        run_nightly(settings, stop=stop)
    except LockHeldError as error:
        log.warning("skipped: %s", error)
    except RunCancelled as error:
        log.warning("the run was stopped: %s", error)
    except Exception:  # the scheduler outlives a failed run; the next night tries again
        log.exception("the nightly run failed")


def build_scheduler(settings: Settings, stop: threading.Event, *, now: bool = False) -> BlockingScheduler:
    trigger = cron_trigger(settings)
    scheduler = BlockingScheduler(timezone=trigger.timezone)
    options: dict[str, Any] = {"next_run_time": datetime.now(trigger.timezone)} if now else {}
    scheduler.add_job(
        nightly_job,
        trigger,
        args=[settings, stop],
        id="nightly",
        misfire_grace_time=settings.trainer.misfire_grace_s,
        coalesce=True,
        max_instances=1,
        **options,
    )
    return scheduler


def log_next_run(scheduler: BlockingScheduler) -> None:
    # a job has a next run time only once the scheduler has started (APScheduler 3.11)
    job = scheduler.get_job("nightly")
    next_run = getattr(job, "next_run_time", None)
    log.warning("next nightly run at %s", next_run.isoformat() if next_run else "never")


def serve(settings: Settings, *, now: bool = False) -> None:
    """Block, running the nightly job on schedule, until SIGTERM or SIGINT."""
    stop = threading.Event()
    scheduler = build_scheduler(settings, stop, now=now)

    def on_signal(signum: int, frame: Any) -> None:
        log.warning("received %s: stopping", signal.Signals(signum).name)
        stop.set()
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheduler.add_listener(
        lambda event: log_next_run(scheduler),
        EVENT_SCHEDULER_STARTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED,
    )
    scheduler.start()  # returns after shutdown; a running job's thread is joined at exit
