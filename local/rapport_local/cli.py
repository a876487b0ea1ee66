"""The `rapport` command: a local DynamoDB, scenario files and the demo, on one machine."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import os
import signal
import statistics
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from rapport import SERVICE_NAME
from rapport.agents import AgentAdmin, AgentChange, Conflict, NewAgent, NotFound, StatusChange
from rapport.catalog import CatalogFile
from rapport.hold_audio import hold_clip
from rapport.privacy import deployed_rules
from rapport.rights import (
    BadRequest,
    ConsentRequest,
    ExplainRequest,
    ObjectionRequest,
    PrivacyRights,
    SubjectRequest,
    Unavailable,
    parse,
)
from rapport.secrets import PepperSource, secrets_manager_fetch
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.agents import AgentStore
from rapport.store.privacy import PrivacyStore
from rapport.store.signals import SignalStore
from rapport.textmatch import Matcher

from rapport_local import PROJECT_DIR
from rapport_local.agent_page import LocalDesk
from rapport_local.emf import MetricTotals
from rapport_local.engine import (
    DynamoDBLocal,
    EngineError,
    create_table,
    endpoint_from_environment,
    local_client,
)
from rapport_local.lambda_runner import LocalFunction
from rapport_local.learning import report, simulate_learning
from rapport_local.scenario import TABLE_NAME, CallResult, Scenario, ScenarioPlayer
from rapport_local.template import load_template, parameter_defaults

DEMO_SCENARIO = PROJECT_DIR / "examples" / "demo.json"
DEMO_CATALOG = PROJECT_DIR / "examples" / "catalog.json"
_OUTCOME_WORDS = {
    "Stored": "stored",
    "WithoutConsent": "not kept (no consent on record)",
    "Objected": "dropped (the caller objected)",
    "WithoutInterest": "no product interest",
    "Duplicate": "already counted",
    "Rejected": "rejected",
    "Expired": "too old to keep",
    "Failed": "failed",
}


@contextlib.contextmanager
def engine_endpoint(endpoint: str | None) -> Iterator[str]:
    """The given DynamoDB endpoint, or a fresh DynamoDB Local on a free loopback port for the duration."""
    if endpoint:
        yield endpoint
        return
    with DynamoDBLocal() as engine:
        yield engine.endpoint


def _player(
    scenario: Scenario, endpoint: str, verbose: bool, table: str = TABLE_NAME, open_pages: bool = True
) -> ScenarioPlayer:
    create_table(endpoint, table)
    level = "INFO" if verbose else "ERROR"
    player = ScenarioPlayer(scenario, endpoint, table_name=table, environment={"POWERTOOLS_LOG_LEVEL": level})
    # The handler logs JSON to stdout as Lambda wants; here stdout carries results, so logs go to stderr.
    # (Assigned rather than setStream(), which would flush a stream that may be closed by now.)
    for handler in logging.getLogger(SERVICE_NAME).handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = sys.stderr
    player.load(open_pages=open_pages)
    return player


def _describe(index: int, name: str, result: CallResult) -> str:
    if result.route in ("privacy", "agent status"):
        who = "caller" if result.route == "privacy" else "agent"
        lines = [f"{index}. {name}", f"   {who} {result.caller}: " + "; ".join(result.reasons)]
        return "\n".join([*lines, *(f"   ✗ {failure}" for failure in result.failures)])
    if result.agent:
        outcome = f"agent {result.agent} [{result.mode}]"
    elif result.route == "fallback_number":
        outcome = "the fallback number"
    else:
        outcome = "the closing message"
    tries = f"{result.attempts} attempt{'s' if result.attempts != 1 else ''}"
    lines = [
        f"{index}. {name}",
        f"   caller {result.caller} → {outcome}, {tries} (rang: {', '.join(result.rang) or '-'})",
    ]
    lines += [f"   · {reason}" for reason in result.reasons]
    lines += [f"   ▸ {step}" for step in result.steps]
    lines += [f"   ✗ {failure}" for failure in result.failures]
    latency = sorted(result.handler_ms)
    if latency:
        lines.append(f"   handler: {len(latency)} invocations, slowest {latency[-1]:.1f} ms")
    return "\n".join(lines)


def demo(args: argparse.Namespace) -> int:
    scenario = Scenario.load(args.scenario)
    print(
        f"rapport demo: {scenario.description}\nStarting DynamoDB Local and loading the scenario…", flush=True
    )
    with engine_endpoint(args.endpoint or endpoint_from_environment()) as endpoint:
        player = _player(scenario, endpoint, args.verbose)
        print(
            f"DynamoDB Local at {endpoint}: {len(scenario.agents)} agents, {len(scenario.callers)} callers,"
            f" {len(scenario.catalog)} products.",
            flush=True,
        )
        if scenario.signals:
            outcomes = ", ".join(
                f"{_OUTCOME_WORDS.get(name, name)} {count}" for name, count in player.signal_outcomes.items()
            )
            print(f"{len(scenario.signals)} signals sent through SignalsFunction: {outcomes}.", flush=True)
        print(flush=True)
        results = []
        for index, call in enumerate(scenario.calls, start=1):
            result = player.play_call(call)
            results.append(result)
            print(_describe(index, call.name, result) + "\n", flush=True)
        print(_metrics_summary(player.metrics) + "\n", flush=True)
    failed = [r for r in results if not r.ok]
    calls = [r for r in results if r.route not in ("privacy", "agent status")]
    steps = [r for r in results if r.route == "privacy"]
    print(
        f"{sum(r.ok for r in calls)} of {len(calls)} calls routed as expected;"
        f" {sum(r.ok for r in steps)} of {len(steps)} privacy requests carried out."
    )
    return 1 if failed else 0


def _metrics_summary(metrics: MetricTotals) -> str:
    """What a deployment would have published to CloudWatch for these calls, as the alarms see it."""
    counts = metrics.counts
    shown = " · ".join(f"{name} {counts[name]}" for name in sorted(counts))
    lines = ["Metrics the functions published (namespace Rapport, embedded metric format):", f"   {shown}"]
    if counts["NewCalls"]:
        threshold = parameter_defaults(load_template()).get("FallbackRateAlarmPercent", "?")
        rate = 100 * counts["Fallbacks"] / counts["NewCalls"]
        lines.append(f"   fallback rate {rate:.0f} % (FallbackRateAlarm: above {threshold} % by default)")
    for name in ("NewCallLatency", "StoreLatency"):
        latency = metrics.durations_ms.get(name, [])
        if latency:
            lines.append(
                f"   {name} median {statistics.median(latency):.1f} ms, slowest {max(latency):.1f} ms"
                f" ({len(latency)} samples)"
            )
    return "\n".join(lines)


def agent_page(args: argparse.Namespace) -> int:
    """Serve the agent page with its WebSocket API, on the scenario's roster; ring it from the terminal."""
    scenario = Scenario.load(args.scenario)
    with engine_endpoint(args.endpoint or endpoint_from_environment()) as endpoint:
        player = _player(scenario, endpoint, args.verbose, open_pages=False)
        desk = LocalDesk(player, endpoint, TABLE_NAME, port=args.port, grace_seconds=args.grace)
        try:
            links = desk.links()
            page, socket = desk.gateway.http_url, desk.gateway.socket_url
            print(f"rapport agent-page: the page at {page}/, its WebSocket at {socket}")
            if not links:
                print("No browser agents on this roster: add one with `rapport agents add … --kind browser`.")
            for agent_id, link in links.items():
                print(f"  {agent_id}: {link}")
            print("Enter: a call from the next caller · h: that caller hangs up · q: quit", flush=True)
            for line in sys.stdin:
                command = line.strip().lower()
                if command == "q":
                    break
                if command == "h":
                    if desk.caller_hangs_up() is None:
                        print("  no caller is in a meeting", flush=True)
                    continue
                desk.ring()
            else:
                # No terminal (stdin closed): serve until interrupted.
                threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            desk.close()
    return 0


def simulate(args: argparse.Namespace) -> int:
    scenario = Scenario.load(args.file)
    with engine_endpoint(args.endpoint or endpoint_from_environment()) as endpoint:
        player = _player(scenario, endpoint, args.verbose, args.table)
        results = [player.play_call(call) for call in scenario.calls]
    for result in results:
        print(json.dumps(result.as_json(), ensure_ascii=False))
    failed = sum(not r.ok for r in results)
    print(f"simulate: {len(results) - failed} passed, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def engine(args: argparse.Namespace) -> int:
    with DynamoDBLocal(port=args.port) as local:
        create_table(local.endpoint, TABLE_NAME)
        if args.load:
            _player(Scenario.load(args.load), local.endpoint, verbose=False)
        print(f"DynamoDB Local is running with table {TABLE_NAME!r}. In another shell:")
        print(f"  export AWS_ENDPOINT_URL_DYNAMODB={local.endpoint}")
        print("Press Ctrl-C to stop it.", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


def signals_match(args: argparse.Namespace) -> int:
    products = CatalogFile.load(args.catalog).products
    matcher = Matcher(products)
    for text in args.text:
        print(json.dumps(matcher.match(text, args.language).as_json(), ensure_ascii=False))
    return 0


def _catalog_store(args: argparse.Namespace) -> SignalStore:
    """The table at --endpoint (or $AWS_ENDPOINT_URL_DYNAMODB), created if missing; without either, the
    table named --table in AWS, with the usual AWS credentials."""
    endpoint = args.endpoint or endpoint_from_environment()
    if endpoint:
        create_table(endpoint, args.table)
        return SignalStore(local_client(endpoint), args.table)
    return SignalStore.for_table(args.table)


def catalog_load(args: argparse.Namespace) -> int:
    catalog = CatalogFile.load(args.file)
    store = _catalog_store(args)
    store.put_products(catalog.products)
    print(f"{len(catalog.products)} products loaded into {store.table_name!r}")
    return 0


def catalog_list(args: argparse.Namespace) -> int:
    for product in _catalog_store(args).catalog():
        print(json.dumps(product.model_dump(mode="json"), ensure_ascii=False))
    return 0


# -- rapport privacy ---------------------------------------------------------------------------------------


def _rights(args: argparse.Namespace) -> PrivacyRights:
    """The privacy operations on the table at --endpoint (or $AWS_ENDPOINT_URL_DYNAMODB), keyed with the
    development pepper; without an endpoint, on the table in AWS, keyed with the stack's secret."""
    endpoint = args.endpoint or endpoint_from_environment()
    secret = args.secret_arn or os.environ.get("RAPPORT_CALLER_KEY_SECRET_ARN", "")
    if endpoint:
        create_table(endpoint, args.table)
        store = PrivacyStore(local_client(endpoint), args.table)
    else:
        store = PrivacyStore.for_table(args.table)
        if not secret:
            raise ValueError("in AWS, give --secret-arn (the stack's CallerKeySecret): caller keys need it")
    pepper = (
        PepperSource(secrets_manager_fetch(secret)) if secret else PepperSource(lambda: DEVELOPMENT_PEPPER)
    )
    return PrivacyRights(store, deployed_rules(), pepper.get)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _print(result: dict[str, object]) -> int:
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def privacy_consent(args: argparse.Namespace) -> int:
    body = {
        "number": args.number,
        "purposes": args.purpose or ["interest_routing", "known_agent"],
        "granted": args.grant,
        "source": args.source,
    }
    return _print(_rights(args).consent(parse(ConsentRequest, body), _actor()))


def privacy_object(args: argparse.Namespace) -> int:
    body = {"number": args.number, "source": args.source, "objected": not args.lift}
    return _print(_rights(args).object(parse(ObjectionRequest, body), _actor()))


def privacy_access(args: argparse.Namespace) -> int:
    return _print(_rights(args).access(parse(SubjectRequest, {"number": args.number}), _actor()))


def privacy_erase(args: argparse.Namespace) -> int:
    return _print(_rights(args).erase(parse(SubjectRequest, {"number": args.number}), _actor()))


def privacy_explain(args: argparse.Namespace) -> int:
    body = {"number": args.number, "call_id": args.call, "language": args.language}
    found = _rights(args).explain(parse(ExplainRequest, {k: v for k, v in body.items() if v}), _actor())
    decision = found["decision"]
    if not isinstance(decision, dict):
        print("No decision record is held for this caller (or call).")
        return 1
    print(
        f"Call {decision['call_id']} of {decision['decided_at']}: {decision['mode']} → {decision['agent_id']}"
    )
    for reason in decision["reasons"]:
        print(f"  · {reason}")
    return 0


def privacy_replay(args: argparse.Namespace) -> int:
    rights = _rights(args)
    endpoint = args.endpoint or endpoint_from_environment()
    log_table = args.log_table or args.table
    log = PrivacyStore(local_client(endpoint), log_table) if endpoint else PrivacyStore.for_table(log_table)
    since = datetime.fromisoformat(args.since).timestamp()
    return _print(rights.replay_erasures(log, since, _actor()))


def _privacy_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run_privacy = commands.add_parser(
        "privacy", help="a caller's rights: consent, objection, access, erasure, explanations"
    )
    privacy = run_privacy.add_subparsers(dest="privacy_command", required=True)
    consent = privacy.add_parser("consent", help="record a consent given (--grant) or withdrawn (--withdraw)")
    consent.add_argument("number", help="the caller's number in E.164, e.g. +4930555010")
    choice = consent.add_mutually_exclusive_group(required=True)
    choice.add_argument("--grant", dest="grant", action="store_true")
    choice.add_argument("--withdraw", dest="grant", action="store_false")
    consent.add_argument(
        "--purpose",
        action="append",
        choices=["interest_routing", "known_agent"],
        help="repeatable; default: both",
    )
    consent.set_defaults(run=privacy_consent)
    objection = privacy.add_parser("object", help="object to all profile-based routing (GDPR Art. 21)")
    objection.add_argument("number")
    objection.add_argument("--lift", action="store_true", help="lift an earlier objection")
    objection.set_defaults(run=privacy_object)
    access = privacy.add_parser("access", help="print everything held about a number (GDPR Art. 15)")
    access.add_argument("number")
    access.set_defaults(run=privacy_access)
    erase = privacy.add_parser("erase", help="erase everything held about a number; print the receipt")
    erase.add_argument("number")
    erase.set_defaults(run=privacy_erase)
    explain = privacy.add_parser("explain", help="print why the number's latest call went where it went")
    explain.add_argument("number", nargs="?", default=None)
    explain.add_argument("--call", default=None, help="a call id: that call's record")
    explain.add_argument("--language", choices=["de", "en"], default=None, help="default: the caller's")
    explain.set_defaults(run=privacy_explain)
    replay = privacy.add_parser(
        "replay-erasures",
        help="erase again, in a restored table, every caller erased since the restore point",
    )
    replay.add_argument(
        "--since", required=True, help="the restore point, ISO 8601 (2026-11-30T12:00:00+00:00)"
    )
    replay.add_argument(
        "--log-table", default=None, help="the table whose erasure log to replay (default: --table)"
    )
    replay.set_defaults(run=privacy_replay)
    for command in (consent, objection, access, erase, explain, replay):
        command.add_argument(
            "--endpoint",
            default=None,
            help="DynamoDB endpoint (default: $AWS_ENDPOINT_URL_DYNAMODB; without either, AWS)",
        )
        command.add_argument("--table", default=TABLE_NAME, help=f"table name (default: {TABLE_NAME})")
        command.add_argument("--secret-arn", default=None, help="in AWS: the CallerKeySecret's ARN")
    for command in (consent, objection):
        command.add_argument(
            "--source", default="cli", help="where the caller made the choice (default: cli)"
        )


# -- rapport agents ----------------------------------------------------------------------------------------

OPENAPI_FILE = PROJECT_DIR / "api" / "agents.openapi.json"


def _admin(args: argparse.Namespace) -> AgentAdmin:
    """The roster operations on the table at --endpoint (or $AWS_ENDPOINT_URL_DYNAMODB), else in AWS."""
    endpoint = args.endpoint or endpoint_from_environment()
    if endpoint:
        create_table(endpoint, args.table)
        return AgentAdmin(AgentStore(local_client(endpoint), args.table))
    return AgentAdmin(AgentStore.for_table(args.table))


def _endpoint(text: str) -> dict[str, str]:
    kind, _, address = text.partition(":")
    return {"kind": {"vc": "voice_connector", "sip": "voice_connector"}.get(kind, kind), "address": address}


def _fields(args: argparse.Namespace) -> dict[str, object]:
    fields: dict[str, object] = {}
    if args.name is not None:
        fields["name"] = args.name
    if args.endpoint_address is not None:
        fields["endpoint"] = _endpoint(args.endpoint_address)
    if args.product is not None:
        products = {}
        for pair in args.product:
            product, _, level = pair.partition("=")
            products[product] = int(level) if level.isdigit() else level
        fields["products"] = products
    if args.language is not None:
        fields["languages"] = args.language
    if args.wrap_up is not None:
        fields["wrap_up_seconds"] = args.wrap_up
    if args.max_calls is not None:
        fields["max_concurrent_calls"] = args.max_calls
    return fields


def agents_add(args: argparse.Namespace) -> int:
    body = {"agent_id": args.agent_id, **_fields(args), "status": args.status}
    return _print(_admin(args).add(parse(NewAgent, body)).model_dump(mode="json"))


def agents_update(args: argparse.Namespace) -> int:
    change = parse(AgentChange, _fields(args))
    return _print(_admin(args).update(args.agent_id, change).model_dump(mode="json"))


def agents_remove(args: argparse.Namespace) -> int:
    return _print(_admin(args).remove(args.agent_id).model_dump(mode="json"))


def agents_get(args: argparse.Namespace) -> int:
    return _print(_admin(args).get(args.agent_id).model_dump(mode="json"))


def agents_list(args: argparse.Namespace) -> int:
    page = _admin(args).list(args.limit, args.next)
    for agent in page.agents:
        print(json.dumps(agent.model_dump(mode="json"), ensure_ascii=False))
    if page.next:
        print(f"more: rapport agents list --next {page.next}", file=sys.stderr)
    return 0


def agents_set_status(args: argparse.Namespace) -> int:
    change = parse(StatusChange, {"status": args.status, "reason": args.reason})
    return _print(_admin(args).set_status(args.agent_id, change).model_dump(mode="json"))


def agents_openapi(args: argparse.Namespace) -> int:
    """Print (or --write) the OpenAPI document AgentsFunction's own routes and models make."""
    document = agents_openapi_document()
    if args.write:
        OPENAPI_FILE.parent.mkdir(exist_ok=True)
        OPENAPI_FILE.write_text(document + "\n", encoding="utf-8")
        print(f"written to {OPENAPI_FILE.relative_to(PROJECT_DIR)}")
    else:
        print(document)
    return 0


def agents_openapi_document() -> str:
    function = LocalFunction(
        "AgentsFunction",
        resources={
            "Table": TABLE_NAME,
            "CallerKeySecret": "",
            "SipMediaApplication.SipMediaApplicationId": "",
        },
    )
    document: str = function.module.openapi_document()
    return document


def hold_audio_command(args: argparse.Namespace) -> int:
    """Write the hold clip, to upload to the stack's hold-audio bucket as `hold.wav`."""
    args.file.write_bytes(hold_clip(args.seconds))
    print(f"{args.file}: {args.seconds} s, 16-bit PCM, mono, 8 kHz")
    return 0


def simulate_learning_command(args: argparse.Namespace) -> int:
    tallies = simulate_learning(args.calls, args.agents, args.seed, args.window)
    print(report(tallies, args.calls, args.agents, args.seed))
    return 0


def _agents_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run_agents = commands.add_parser(
        "agents", help="the roster: add, change, remove, list agents, set status"
    )
    agents = run_agents.add_subparsers(dest="agents_command", required=True)
    add = agents.add_parser("add", help="add an agent")
    update = agents.add_parser("update", help="change an agent (options left out stay as they are)")
    for command, required in ((add, True), (update, False)):
        command.add_argument("agent_id")
        command.add_argument("--name", required=required, help="display name")
        command.add_argument(
            "--at",
            dest="endpoint_address",
            required=required,
            metavar="KIND:ADDRESS",
            help="where they are reached: pstn:+4930555010, vc:berlin-07 (a SIP user), connect:<user id>",
        )
        command.add_argument("--product", action="append", metavar="PRODUCT=LEVEL", help="repeatable; 1-5")
        command.add_argument("--language", action="append", metavar="CODE", help="repeatable; de, en…")
        command.add_argument("--wrap-up", type=int, default=None, metavar="SECONDS")
        command.add_argument(
            "--max-calls",
            type=int,
            default=None,
            metavar="N",
            help="calls taken at once (default 1; at most 4)",
        )
    add.add_argument("--status", choices=["available", "away", "offline"], default="available")
    add.set_defaults(run=agents_add)
    update.set_defaults(run=agents_update)
    remove = agents.add_parser("remove", help="take an agent off the roster (a call they are on goes on)")
    remove.add_argument("agent_id")
    remove.set_defaults(run=agents_remove)
    get = agents.add_parser("get", help="one agent, and where they stand right now")
    get.add_argument("agent_id")
    get.set_defaults(run=agents_get)
    listing = agents.add_parser("list", help="one JSON line per agent, a page at a time")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--next", default=None, help="where the page before ended")
    listing.set_defaults(run=agents_list)
    status = agents.add_parser("set-status", help="set an agent available, away or offline")
    status.add_argument("agent_id")
    status.add_argument("status", choices=["available", "away", "offline"])
    status.add_argument("--reason", default="", help="why (shown by get)")
    status.set_defaults(run=agents_set_status)
    for command in (add, update, remove, get, listing, status):
        command.add_argument(
            "--endpoint",
            default=None,
            help="DynamoDB endpoint (default: $AWS_ENDPOINT_URL_DYNAMODB; without either, AWS)",
        )
        command.add_argument("--table", default=TABLE_NAME, help=f"table name (default: {TABLE_NAME})")
    openapi = agents.add_parser(
        "openapi", help="print the API's OpenAPI document, made from the function itself"
    )
    openapi.add_argument(
        "--write", action="store_true", help=f"write it to {OPENAPI_FILE.relative_to(PROJECT_DIR)}"
    )
    openapi.set_defaults(run=agents_openapi)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="rapport", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    run_demo = commands.add_parser("demo", help="start DynamoDB Local, load the demo and route a few calls")
    run_demo.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="scenario file to play")
    run_demo.set_defaults(run=demo)

    run_page = commands.add_parser(
        "agent-page", help="serve the agent page on loopback, with its WebSocket API; ring it from here"
    )
    run_page.add_argument("--scenario", type=Path, default=DEMO_SCENARIO, help="whose roster (the demo's)")
    run_page.add_argument(
        "--port", type=int, default=8080, help="the page's port; its WebSocket's is the next"
    )
    run_page.add_argument(
        "--grace", type=float, default=10.0, help="seconds before a closed page means offline"
    )
    run_page.add_argument(
        "--endpoint", help="an existing DynamoDB endpoint instead of a fresh DynamoDB Local"
    )
    run_page.add_argument("-v", "--verbose", action="store_true", help="the functions' logs on stderr")
    run_page.set_defaults(run=agent_page)

    run_hold = commands.add_parser(
        "hold-audio", help="write the hold clip callers hear while a browser agent is offered their call"
    )
    run_hold.add_argument("file", type=Path, help="where to write it (upload it as hold.wav)")
    run_hold.add_argument("--seconds", type=int, default=10, help="its length (HoldAudioSeconds)")
    run_hold.set_defaults(run=hold_audio_command)

    run_simulate = commands.add_parser(
        "simulate", help="play a scenario file; exit 1 when an expectation fails"
    )
    run_simulate.add_argument("file", type=Path)
    run_simulate.set_defaults(run=simulate)

    run_engine = commands.add_parser("engine", help="run DynamoDB Local with rapport's table until Ctrl-C")
    run_engine.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    run_engine.add_argument("--load", type=Path, default=None, help="scenario file whose data to load")
    run_engine.set_defaults(run=engine)

    run_signals = commands.add_parser("signals", help="signals: see what a text says about the catalog")
    signal_commands = run_signals.add_subparsers(dest="signals_command", required=True)
    run_match = signal_commands.add_parser(
        "match", help="print one JSON line per text: the products whose interest it raises, and why"
    )
    run_match.add_argument(
        "--catalog", type=Path, default=DEMO_CATALOG, help="catalog file (default: the demo's)"
    )
    run_match.add_argument(
        "--language", choices=["de", "en"], default=None, help="default: told from each text"
    )
    run_match.add_argument("text", nargs="+")
    run_match.set_defaults(run=signals_match)

    run_catalog = commands.add_parser("catalog", help="the product catalog in a table")
    catalog_commands = run_catalog.add_subparsers(dest="catalog_command", required=True)
    run_load = catalog_commands.add_parser("load", help="write a catalog file's products into the table")
    run_load.add_argument("file", type=Path)
    run_load.set_defaults(run=catalog_load)
    run_list = catalog_commands.add_parser("list", help="print the table's products, one JSON line each")
    run_list.set_defaults(run=catalog_list)
    for command in (run_load, run_list):
        command.add_argument(
            "--endpoint",
            default=None,
            help="DynamoDB endpoint (default: $AWS_ENDPOINT_URL_DYNAMODB; without either, AWS itself)",
        )
        command.add_argument(
            "--table",
            default=TABLE_NAME,
            help=f"table name (default: {TABLE_NAME}; in AWS, the stack's TableName)",
        )

    _privacy_commands(commands)
    _agents_commands(commands)
    learning = commands.add_parser(
        "simulate-learning",
        help="agents with hidden conversion rates, outcomes fed back: learned ranking against proficiency"
        " only and longest idle (no table needed)",
    )
    learning.add_argument("--calls", type=int, default=5000)
    learning.add_argument("--agents", type=int, default=20)
    learning.add_argument("--seed", type=int, default=7)
    learning.add_argument("--window", type=int, default=500, help="calls per row of the curve")
    learning.set_defaults(run=simulate_learning_command)

    for command in (run_demo, run_simulate):
        command.add_argument(
            "--endpoint",
            default=None,
            help="use this DynamoDB endpoint instead of starting one (default: $AWS_ENDPOINT_URL_DYNAMODB)",
        )
        command.add_argument("--verbose", action="store_true", help="show the handler's log lines on stderr")
    run_simulate.add_argument(
        "--table",
        default=TABLE_NAME,
        help=f"table name (default: {TABLE_NAME}), e.g. one `rapport agents` filled",
    )
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    try:
        return int(args.run(args))
    except (NotFound, Conflict) as refused:
        print(f"rapport: {'no agent ' if isinstance(refused, NotFound) else ''}{refused}", file=sys.stderr)
        return 2
    except BadRequest as bad:
        for problem in bad.problems:
            print(f"rapport: {problem}", file=sys.stderr)
        return 2
    except Unavailable as error:
        print(f"rapport: not carried out for now ({error}); try again", file=sys.stderr)
        return 3
    except (EngineError, FileNotFoundError, ValueError) as error:
        print(f"rapport: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
