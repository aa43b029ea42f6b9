"""`trainer nightly`, `trainer status`, `trainer rollback`, `trainer canary check` and `trainer schedule`: the
nightly personalization and its registry. Parsing only; the work is in trainer/nightly/."""

from __future__ import annotations

import json
import logging
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from brain.registry_records import RegistryRecord
from trainer.commands.common import err_console, user_errors

app = typer.Typer()
console = Console()


def _settings(**finetune_overrides: Any) -> Any:
    from brain.refusals import settings_or_refuse

    settings = settings_or_refuse()
    finetune = {k: v for k, v in finetune_overrides.items() if v is not None}
    if finetune:
        settings.trainer.finetune = settings.trainer.finetune.model_copy(update=finetune)
    return settings


@app.command()
def nightly(
    max_steps: int | None = typer.Option(None, help="Bound on optimizer steps per target (default: settings)."),
    launcher: str | None = typer.Option(
        None, help='Run each fine-tune under a launcher, e.g. "torchrun --nproc_per_node 2".'
    ),
) -> None:
    """Fine-tune on the opted-in logs, evaluate, and promote the candidates that pass the gate."""
    from brain.engine.model_loading import ModelNotFoundError
    from trainer.nightly.lock import LockHeldError
    from trainer.nightly.run import run_nightly

    with user_errors():
        settings = _settings(max_steps=max_steps, launcher=launcher)
        try:
            report = run_nightly(settings)
        except LockHeldError as error:
            console.print(f"[yellow]{error}")
            raise typer.Exit(0) from None
        except ModelNotFoundError as error:
            err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    console.print(f"report: {settings.trainer.runs_dir}/{report.run}/report.json (and report.png)")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Show what is live for each target, running canaries, members' like-rate per version (with a 95 % Wilson
    interval), the versions on disk and the history with metrics."""
    from brain.adapters import COMMUNITY
    from trainer.nightly.link import RedisLink
    from trainer.nightly.registry import BASE, Registry
    from trainer.nightly.report import ReportVersionError, read_report
    from trainer.nightly.runs import report_dirs
    from trainer.nightly.stats import wilson

    with user_errors():
        settings = _settings()
        with RedisLink.from_settings(settings) as link:
            registry = Registry(settings.trainer.registry_dir, link, settings.trainer.keep_versions)
            data: dict[str, Any] = {
                "lock": link.call(link.store.trainer_lock.holder()),
                "targets": {
                    target: {
                        "live": _json(registry.live(target)),
                        "versions": registry.versions(target),
                        "history": [_json(event) for event in registry.history(target)],
                    }
                    for target in registry.targets()
                },
                "canaries": {t: _json(c) for t, c in link.call(link.store.canaries.all()).items()},
            }
            roles = {info["live"]["name"]: "live" for info in data["targets"].values() if info["live"]}
            roles |= {canary["name"]: "canary" for canary in data["canaries"].values()}
            if not (data["targets"].get(COMMUNITY) or {}).get("live"):
                roles[BASE] = "live"  # what serves the community without an adapter
            data["like_rates"] = {}
            for name, (likes, dislikes) in link.call(link.store.ratings.like_counts()).items():
                total = likes + dislikes
                data["like_rates"][name] = {
                    "likes": likes,
                    "dislikes": dislikes,
                    "like_rate": likes / total if total else None,
                    "ci95": list(wilson(likes, total)),
                    "serving": roles.get(name),
                }
        finished = report_dirs(settings.trainer.runs_dir)
        data["last_run"] = None
        if finished:
            try:
                last = read_report(finished[-1])
                data["last_run"] = last.model_dump(include={"run", "status", "started_at", "finished_at"})
            except ReportVersionError as error:  # refused, and said why; what is live is still shown
                data["last_run"] = {"run": finished[-1].name, "refused": str(error)}
    if as_json:
        print(json.dumps(data, indent=2))
        return
    _print_status(data)


def _json(record: RegistryRecord | None) -> dict[str, Any] | None:
    return record.model_dump(mode="json", exclude={"format"}) if record else None


def _metric(metrics: dict[str, Any] | None, key: str) -> str:
    value = (metrics or {}).get(key)
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _print_status(data: dict[str, Any]) -> None:
    console.print(f"lock: {data['lock'] or 'free'}")
    last = data["last_run"]
    if last is None:
        console.print("last run: none")
    elif "refused" in last:
        console.print(f"last run: {last['run']}: [yellow]{last['refused']}", highlight=False)
    else:
        console.print(f"last run: {last['run']} {last['status']} at {last['finished_at']}")
    table = Table(title="live adapters")
    for column in ("target", "live", "promoted at", "test ppl", "base test ppl", "general ppl", "on disk"):
        table.add_column(column)
    for target, info in data["targets"].items():
        live = info["live"] or {}
        metrics = live.get("metrics")
        table.add_row(
            target,
            f"v{live['version']}" if live else "base",
            live.get("promoted_at", "-"),
            _metric(metrics, "test_ppl"),
            _metric(metrics, "base_test_ppl"),
            _metric(metrics, "general_ppl"),
            " ".join(f"v{v}" for v in info["versions"]) or "-",
        )
    console.print(table)
    for target, canary in data.get("canaries", {}).items():
        console.print(
            f"canary: {target} {canary['name']} serves {canary['share']:.0%} of opted-in members since "
            f"{canary['started_at']} (promoted at {canary['min_ratings']} ratings unless worse)"
        )
    rates = Table(title="members' like-rate per version", caption="95 % interval: Wilson score")
    for column in ("version", "serving", "likes", "dislikes", "like-rate", "95 % interval"):
        rates.add_column(column, justify="left" if column in ("version", "serving") else "right")
    for name, rate in data.get("like_rates", {}).items():
        low, high = rate["ci95"]
        rates.add_row(
            name,
            rate["serving"] or "",
            str(rate["likes"]),
            str(rate["dislikes"]),
            f"{rate['like_rate']:.1%}" if rate["like_rate"] is not None else "-",
            f"{low:.1%} – {high:.1%}" if rate["like_rate"] is not None else "-",
        )
    if data.get("like_rates"):
        console.print(rates)
    for target, info in data["targets"].items():
        for event in info["history"][:10]:
            version = f"v{event['version']}" if event.get("version") else "base"
            previous = f"v{event['previous']}" if event.get("previous") else "base"
            console.print(
                f"  {target}  {event['at']}  {event['action']:<8} {previous} -> {version}  "
                f"test ppl {_metric(event.get('metrics'), 'test_ppl')}"
            )


@app.command()
def rollback(
    target: str = typer.Argument(..., help="community, user-<hash>, or a user as platform:id."),
    version: str | None = typer.Argument(
        None, help="A version number, or 'base' to serve without this adapter (default: the one live before)."
    ),
) -> None:
    """Put an earlier adapter version of TARGET live again (and tell every brain to reload)."""
    from brain.adapters import user_target
    from trainer.nightly.link import RedisLink
    from trainer.nightly.lock import LockHeldError, TrainerLock
    from trainer.nightly.registry import BASE, Registry, RegistryError

    user = target if ":" in target else None
    if version is not None and version != BASE and not version.lstrip("v").isdigit():
        raise typer.BadParameter(f"{version!r} is neither a version number nor 'base'", param_hint="VERSION")
    chosen: int | str | None = version if version in (None, BASE) else int(version.lstrip("v"))
    with user_errors():
        settings = _settings()
        with RedisLink.from_settings(settings) as link:
            if user is not None:  # its name is keyed by the id key, which the link has loaded
                target = user_target(user)
            registry = Registry(settings.trainer.registry_dir, link, settings.trainer.keep_versions)
            before = registry.live(target)
            try:
                with TrainerLock(link, settings.trainer.lock_ttl_s) as lock:
                    after = registry.rollback(target, chosen, lock=lock)
            except (LockHeldError, RegistryError) as error:
                console.print(f"[red]error:[/] {error}")
                raise typer.Exit(1) from None
    was = f"v{before.version}" if before else "base"
    now = f"v{after.version}" if after else "base"
    console.print(f"{target}: {was} -> {now}; brains reload now")


canary_app = typer.Typer(help="The community canary: a candidate serving a share of members until ratings decide.")
app.add_typer(canary_app, name="canary")


@canary_app.command("check")
def canary_check() -> None:
    """Decide the running canary now, as a nightly run does first: promote, roll back, or let it go on."""
    from brain.adapters import COMMUNITY
    from trainer.nightly import canary
    from trainer.nightly.link import RedisLink
    from trainer.nightly.lock import LockHeldError, TrainerLock
    from trainer.nightly.registry import Registry

    with user_errors():
        settings = _settings()
        with RedisLink.from_settings(settings) as link:
            registry = Registry(settings.trainer.registry_dir, link, settings.trainer.keep_versions)
            try:
                with TrainerLock(link, settings.trainer.lock_ttl_s) as lock:
                    decision = canary.check(registry, COMMUNITY, settings.trainer.canary, lock=lock)
            except LockHeldError as error:
                console.print(f"[yellow]{error}")
                raise typer.Exit(1) from None
    if decision is None:
        console.print("no canary is running")
        return
    console.print(f"{decision.target}: canary v{decision.version} {decision.action}: {decision.reason}")


@app.command()
def schedule(
    now: bool = typer.Option(False, "--now", help="Also run once right away."),
) -> None:
    """Run `trainer nightly` on the configured cron schedule (default 03:00 in trainer.timezone) until SIGTERM."""
    from trainer.nightly import schedule as scheduling

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    with user_errors():
        settings = _settings()
        scheduling.serve(settings, now=now)
