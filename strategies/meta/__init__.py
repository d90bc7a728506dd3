"""The meta-investor of Equity-MARL (SPEC section 5): pure functions, no bus, no SQL.

Agents are treated as stocks: each step's P&L is split by Shapley value
(:mod:`.shapley`, with the characteristic function of :mod:`.investor`),
turned into share prices and volatilities (:mod:`.share_price`), valued as
call options (:mod:`.options`) and allocated ensemble weight
(:mod:`.allocation`); :mod:`.step` runs one whole step and can be saved and
resumed.
"""
