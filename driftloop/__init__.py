"""driftloop: event-driven continuous training.

This package is the contracts every service shares: settings, event types and their schemas,
Kafka clients with safe defaults, metrics and logging helpers, and the local stack.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("driftloop")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0"
