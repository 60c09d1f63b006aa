"""``twin broker``, ``twin sensors`` and ``twin alarms``: added through entry points.

Each command is a thin call of the library (:mod:`live.broker`, :mod:`live.sensors`,
:mod:`live.alarms`, :mod:`live.subscriber`, :mod:`live.simulate`, :mod:`live.closed_loop`); a
TwinError is reported by ``twin``'s main (``error [CODE] message``, exit 2). Changes are
audited as the operator (``TWIN_USER`` or the login name) with the role ``cli``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import threading
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from analysis.shutoff import shutoff
from live.alarms import STATES, acknowledge_alarm, close_alarm, list_alarms, suspected_burst
from live.broker import broker_url, local_broker
from live.closed_loop import check_shutoff
from live.sensors import KINDS, SensorSpec, Who, add_sensors, import_sensors, list_sensors
from live.simulate import register_demo_sensors, simulate
from live.subscriber import Subscriber
from twin.audit import COMMAND_ROLE
from twin.db import open_twin
from twin.errors import ConfigError, InputError
from twin.settings import get_settings

__all__ = ["broker_app", "sensors_app", "alarms_app"]

broker_app = typer.Typer(help="The private MQTT broker (Mosquitto).", no_args_is_help=True)
sensors_app = typer.Typer(help="Sensors on the network and their readings.", no_args_is_help=True)
alarms_app = typer.Typer(help="Alarms raised from live readings (预警).", no_args_is_help=True)
console = Console(stderr=True)


def _who(command: str) -> Who:
    return Who(get_settings().user_name, COMMAND_ROLE, "CLI", f"twin {command}")


def _json(value: object) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _private_broker():
    settings = get_settings()
    if settings.mqtt_url is not None:
        raise ConfigError("TWIN_MQTT_URL is set: the private broker is not used",
                          zh="已设置 TWIN_MQTT_URL：不使用专用消息代理")
    return local_broker(settings)


# -- twin broker ------------------------------------------------------------------------------------
@broker_app.command("start")
def broker_start() -> None:
    """Start the private Mosquitto broker under the data folder (idempotent)."""
    broker = _private_broker()
    started = broker.start()
    console.print(("started" if started else "already running") + f" on 127.0.0.1:{broker.port} ({broker.root})")


@broker_app.command("stop")
def broker_stop() -> None:
    """Stop the private broker (idempotent; queued QoS 1 messages are saved)."""
    console.print("stopped" if _private_broker().stop() else "not running")


@broker_app.command("status")
def broker_status() -> None:
    """Say whether the private broker runs, and where (exit 1 when it does not)."""
    broker = _private_broker()
    pid = broker.pid()
    state = f"running (pid {pid})" if pid else "stopped"
    console.print(f"private broker: {state}, 127.0.0.1:{broker.port or '-'} ({broker.root}, log {broker.log_file})")
    if pid is None:
        raise typer.Exit(code=1)


@broker_app.command("url")
def broker_url_command() -> None:
    """Print the broker's URL with its credentials (mqtt://user:password@127.0.0.1:port)."""
    typer.echo(broker_url(get_settings()))


# -- twin sensors -----------------------------------------------------------------------------------
@sensors_app.command("add")
def sensors_add(
    sensor_id: str = typer.Argument(..., metavar="ID"),
    kind: str = typer.Option(..., "--kind", help=" | ".join(KINDS)),
    unit: str = typer.Option(..., "--unit", help="e.g. MPa, m3/h, m, %LEL"),
    node: str | None = typer.Option(None, "--node", help="Node id it sits on."),
    pipe: str | None = typer.Option(None, "--pipe", help="Pipe id it sits on."),
    low: float | None = typer.Option(None, "--low", help="Alarm below this."),
    high: float | None = typer.Option(None, "--high", help="Alarm above this."),
    rate: float | None = typer.Option(None, "--rate", help="Alarm when it changes faster (unit per minute)."),
    stale_s: int | None = typer.Option(None, "--stale-s", help="Alarm after this many seconds without a reading."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register a sensor on a node or a pipe of the twin."""
    spec = SensorSpec(sensor_id, kind, unit, node=node, pipe=pipe, low=low, high=high, rate=rate, stale_s=stale_s)
    added = add_sensors(open_twin(get_settings()), [spec], _who("sensors add"), action="sensor added")
    if as_json:
        _json(added[0])
    else:
        console.print(f"sensor {sensor_id} added on {'node ' + node if node else 'pipe ' + str(pipe)}")


@sensors_app.command("import")
def sensors_import(file: Path = typer.Argument(..., metavar="FILE.csv"),
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Register every sensor of a CSV (id,kind,unit,node,pipe,low,high,rate,stale_s), all or nothing."""
    added = import_sensors(open_twin(get_settings()), file, _who("sensors import"))
    if as_json:
        _json(added)
    else:
        console.print(f"{len(added)} sensors added")


@sensors_app.command("list")
def sensors_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """The sensors, where they are and their last reading."""
    sensors = list_sensors(open_twin(get_settings()))
    if as_json:
        _json(sensors)
        return
    table = Table("id", "kind", "unit", "node / pipe", "low", "high", "rate/min", "stale s", "last t", "last v")
    for s in sensors:
        table.add_row(s["id"], s["kind"], s["unit"], s["node"] or s["pipe"], *(
            "" if s[k] is None else f"{s[k]:g}" for k in ("low", "high", "rate", "stale_s")),
            s["last_t"] or "", "" if s["last_v"] is None else f"{s['last_v']:g}")
    Console().print(table)


@sensors_app.command("listen")
def sensors_listen(duration: float | None = typer.Option(None, "--duration", help="Stop after this many s."),
                   shared: bool = typer.Option(False, "--shared", help="Join the shared subscription.")) -> None:
    """Store readings from the broker and raise alarms, in the foreground (Ctrl-C stops)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sub = Subscriber(settings, open_twin(settings), shared=shared).start()
    started = time.monotonic()
    try:
        while not stop.wait(10.0 if duration is None else min(10.0, duration)):
            console.print(dict(sub.stats))
            if duration is not None and time.monotonic() - started >= duration:
                break
    except KeyboardInterrupt:
        pass
    finally:
        sub.stop()
        console.print(dict(sub.stats))


@sensors_app.command("simulate")
def sensors_simulate(
    duration: float = typer.Option(60.0, "--duration", help="Seconds to run (it stops by itself)."),
    rate: float = typer.Option(1.0, "--rate", help="Readings per second of each sensor."),
    burst: bool = typer.Option(False, "--burst", help="A main bursts a third of the way in."),
    register: bool = typer.Option(False, "--register", help="First put a handful of sensors on the network."),
) -> None:
    """Publish plausible readings of the registered sensors to the broker (the demo)."""
    settings = get_settings()
    engine = open_twin(settings)
    if register:
        added = register_demo_sensors(engine, _who("sensors simulate --register"))
        console.print(f"{len(added)} demo sensors registered")
    result = simulate(settings, engine, duration_s=duration, rate_hz=rate, burst=burst,
                      progress=lambda m: console.print(m) if console.is_terminal else None)
    console.print(f"{result['published']} readings of {result['sensors']} sensors in {result['duration_s']} s")


def _time(value: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{value!r} is not an ISO 8601 time",
                         zh=f"{value!r} 不是 ISO 8601 时间") from None
    if t.tzinfo is None:
        raise InputError(f"{value!r} needs a UTC offset (e.g. 2026-12-03T14:05:00+08:00)",
                         zh=f"{value!r} 须带 UTC 偏移（例如 2026-12-03T14:05:00+08:00）")
    return t


@sensors_app.command("check-shutoff")
def sensors_check_shutoff(
    pipe: str | None = typer.Option(None, "--pipe", help="The burst pipe the shutoff was for."),
    node: str | None = typer.Option(None, "--node", help="The burst node the shutoff was for."),
    closed_at: str = typer.Option(..., "--closed-at", help="When the valves were closed (ISO 8601)."),
    failed: list[str] = typer.Option([], "--failed-valve", help="A valve that would not close (repeat)."),
    baseline_s: float = typer.Option(300.0, "--baseline-s"),
    settle_s: float = typer.Option(30.0, "--settle-s"),
    fall: float = typer.Option(0.3, "--fall", help="Fraction pressure must fall by inside."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Did the shutoff hold? Pressure inside should fall, outside not; else a valve may pass (内漏)."""
    engine = open_twin(get_settings())
    answer = shutoff(engine, pipe=pipe, node=node, failed_valves=failed)
    result = check_shutoff(engine, answer, closed_at=_time(closed_at), baseline_s=baseline_s,
                           settle_s=settle_s, fall_fraction=fall)
    if as_json:
        _json(result)
        return
    console.print(result["verdict_label"])
    for s in result["sensors"]:
        fell = ("下降 fell" if s["fell"] else "保持 held" if s["fell"] is False else "无数据 no data")
        console.print(f"  {s['sensor']:<12} {'范围内 inside ' if s['inside'] else '范围外 outside'} "
                      f"关阀前 before {s['before']} 关阀后 after {s['after']} {fell}")
    if result["passing_valve"]:
        ring = result["next_ring"]
        console.print(f"阀门 {result['passing_valve']['id']} 疑似内漏；请关闭外一圈阀门 "
                      f"valve {result['passing_valve']['id']} may be passing; next ring: close "
                      + ", ".join(v["id"] for v in ring["valves"]))


# -- twin alarms ------------------------------------------------------------------------------------
@alarms_app.command("list")
def alarms_list(state: str | None = typer.Option(None, "--state", help=" | ".join([*STATES, "active"])),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Alarms, newest first."""
    alarms = list_alarms(open_twin(get_settings()), state=state)
    if as_json:
        _json(alarms)
        return
    table = Table("编号 id", "状态 state", "级别 severity", "告警 alarm", "传感器 sensor", "管点/管线 node / pipe",
                  "报警时间 raised at")
    for a in alarms:
        table.add_row(str(a["id"]), a["state_label"], a["severity_label"], a["message"], a["sensor"],
                      a["node"] or a["pipe"], str(a["raised_at"]))
    Console().print(table)


@alarms_app.command("ack")
def alarms_ack(alarm_id: int = typer.Argument(..., metavar="ID"),
               note: str | None = typer.Option(None, "--note")) -> None:
    """Acknowledge an open alarm (audited)."""
    acknowledge_alarm(open_twin(get_settings()), alarm_id, _who("alarms ack"), note=note)
    console.print(f"告警 {alarm_id} 已确认 alarm {alarm_id} acknowledged")


@alarms_app.command("close")
def alarms_close(alarm_id: int = typer.Argument(..., metavar="ID"),
                 note: str | None = typer.Option(None, "--note")) -> None:
    """Close an acknowledged alarm (audited)."""
    close_alarm(open_twin(get_settings()), alarm_id, _who("alarms close"), note=note)
    console.print(f"告警 {alarm_id} 已关闭 alarm {alarm_id} closed")


@alarms_app.command("burst")
def alarms_burst(as_json: bool = typer.Option(False, "--json")) -> None:
    """The suspected burst the open pressure-drop alarms point to, and its proposed shutoff."""
    settings = get_settings()
    burst = suspected_burst(open_twin(settings), window_s=settings.alarm_burst_window_s)
    if as_json:
        _json(burst)
        return
    if burst is None:
        console.print("无疑似爆管（压降传感器不足两个） no suspected burst (fewer than two pressure drops)")
        return
    console.print(f"疑似爆管：管线 {burst['pipe']} 附近（传感器 {', '.join(burst['sensors'])}） "
                  f"suspected burst near pipe {burst['pipe']}")
    if burst["shutoff"]:
        console.print("关阀 close: " + ", ".join(v["id"] for v in burst["shutoff"]["valves"]))
    elif burst["note"]:
        console.print(burst["note"])
