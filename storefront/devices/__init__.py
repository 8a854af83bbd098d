"""Store devices over MQTT: the device registry, the gateway and the broker configuration."""
