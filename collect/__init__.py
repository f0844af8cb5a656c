"""The controller: inventory, transports, and the results store. It runs from the checkout, never installed."""

__version__ = "0.1.0"
