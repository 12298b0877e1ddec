"""A simulated node for the demo: loopback stand-ins for LNDg and regolancer.

The same stand-ins back the test suite, so the demo shows exactly what the tests check.
"""
