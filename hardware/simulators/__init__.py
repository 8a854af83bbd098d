"""Seeded device simulators: smart carts, gate scanners and a lossy network."""

from hardware.simulators.cart import SmartCartSimulator
from hardware.simulators.gate import GateSimulator
from hardware.simulators.network import Delivery, LossyNetwork

__all__ = ["Delivery", "GateSimulator", "LossyNetwork", "SmartCartSimulator"]
