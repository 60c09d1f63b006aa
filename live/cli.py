"""``twin broker``, ``twin sensors`` and ``twin alarms``: added through entry points."""

from __future__ import annotations

import typer

__all__ = ["broker_app", "sensors_app", "alarms_app"]

broker_app = typer.Typer(help="The private MQTT broker (Mosquitto).", no_args_is_help=True)
sensors_app = typer.Typer(help="Sensors on the network and their readings.", no_args_is_help=True)
alarms_app = typer.Typer(help="Alarms raised from live readings (预警).", no_args_is_help=True)
