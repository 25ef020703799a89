"""Built-in source adapters, registered as ``complaint_monitor.sources`` entry points.

Each adapter implements ``monitor.source.Source``; see that module for the
contract a third-party adapter follows.
"""
