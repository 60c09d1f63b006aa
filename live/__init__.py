"""Live readings and alarms: the private MQTT broker, sensors, readings, alarms (issue 17)."""
