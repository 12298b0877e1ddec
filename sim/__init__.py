"""Everything simulated: the node, regolancer, LNDg and the Telegram Bot API.

`sim.model` is the one model of a node and of what a regolancer run on it does; the demo
(`sim.demo`, on the loopback stand-ins `sim.lndg` and `sim.regolancer`), the tests and the
benchmark's simulation (`bench.simulate`) all play it, so each shows what the others check.
Shipped with the daemon because `regolancer-orchestrator demo` runs on it; `core` never
imports it, and `bot` only to start the demo.
"""
